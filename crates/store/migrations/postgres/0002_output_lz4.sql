-- Output is log text: lz4 compresses it about 2x at several hundred MB/s, where the default
-- pglz is several times slower. Servers without lz4 (built without it, or before PostgreSQL 14)
-- keep the default.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE output ALTER COLUMN data SET COMPRESSION lz4';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'lz4 is not available (%); output keeps the default compression', SQLERRM;
END $$;
