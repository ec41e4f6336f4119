//go:build !linux

package packs

import "errors"

func openForWriting(path string) (bool, error) { return false, errors.ErrUnsupported }
