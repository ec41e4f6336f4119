//go:build !linux

package packs

import (
	"errors"
	"os"
)

func (p *Pack) openBeneath(path string) (*os.File, error) { return nil, errors.ErrUnsupported }
