//go:build !linux

package packs

import (
	"errors"
	"hash"
	"os"
)

func (p *Pack) openBeneath(path string) (*os.File, error) { return nil, errors.ErrUnsupported }

func (p *Pack) hashBeneath(path string, size int64, h hash.Hash, buf []byte) (int64, stamp, error) {
	return 0, stamp{}, errors.ErrUnsupported
}
