-- The remote host a record came from (remote runners stream from every host); NULL for local output.
ALTER TABLE output ADD COLUMN host TEXT;
