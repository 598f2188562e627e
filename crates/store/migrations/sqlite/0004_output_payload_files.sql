-- Record payloads move to one append-only file per execution (output/<id>.log); rows written
-- from now on index them by position and length and keep an empty `data`. Older rows keep
-- their bytes in `data` (file_pos NULL) and are read as before.
ALTER TABLE output ADD COLUMN file_pos INTEGER;
ALTER TABLE output ADD COLUMN len INTEGER;
