-- The blob file's size, mtime, ctime, inode and device when its content was
-- last verified (see fingerprint.go). While they are unchanged a lookup
-- does not re-hash the file; the bytes are verified as they are read.
-- NULL: not recorded (a cache made before this); the next lookup re-hashes.
ALTER TABLE file_blobs ADD COLUMN fingerprint TEXT;
