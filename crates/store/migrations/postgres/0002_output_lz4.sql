-- Output is log text: lz4 compresses it about 2x at several hundred MB/s, where the default
-- pglz is several times slower. Servers built without lz4 keep the default.
DO $$
BEGIN
    ALTER TABLE output ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 is not available; output keeps the default compression';
END $$;
