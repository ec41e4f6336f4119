package resources

import "errors"

// Sentinels for the conditions callers branch on.
var (
	ErrInvalidType = errors.New("invalid asset type")
	ErrInvalidHash = errors.New("invalid hash")
	ErrInvalidRef  = errors.New("invalid resource reference")
	ErrNotInUse    = errors.New("resource not in use")
)
