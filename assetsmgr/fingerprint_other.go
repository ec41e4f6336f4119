//go:build !linux

package assetsmgr

import "io/fs"

// fingerprint is not implemented here: every lookup re-hashes blob files.
func fingerprint(fi fs.FileInfo) string { return "" }
