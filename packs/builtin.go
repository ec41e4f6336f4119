package packs

import (
	"embed"
	"io/fs"
)

//go:generate go run ./internal/genbuiltin builtin

//go:embed builtin
var builtinFS embed.FS

// builtinPack is the default content compiled into the binary, so a server
// runs with zero setup. Its files never change, so they are hashed once.
func builtinPack() *Pack {
	sub, err := fs.Sub(builtinFS, "builtin")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory exists
	}
	return &Pack{
		Meta: Meta{Name: "builtin", Description: "default content compiled into gameserver", Priority: BuiltinPriority},
		fsys: sub,
	}
}
