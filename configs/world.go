package configs

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/BurntSushi/toml"
)

// NoWorld as the world setting turns world content off: clients use only
// what preload gives them (and what a game server adds with Client.Use).
const NoWorld = "none"

// decodeWorld decodes and validates a world file. Every unknown setting is
// a Problem with its line and the setting probably meant; a value of the
// wrong type or an invalid one is reported as well.
func decodeWorld(data, file string) (World, error) {
	var w World
	md, err := toml.Decode(data, &w)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return World{}, Problems{{File: file, Line: pe.Position.Line, Msg: pe.Message}}
		}
		return World{}, Problems{{File: file, Msg: err.Error()}}
	}
	lines := strings.Split(data, "\n")
	var ps Problems
	for _, k := range md.Undecoded() {
		known, table := settingNames(reflect.TypeFor[World]()), ""
		if len(k) == 2 && k[0] == "node" {
			known, table = settingNames(reflect.TypeFor[NodeType]()), "node"
		}
		name := k[len(k)-1]
		msg := "unknown setting"
		if guess := didYouMean(name, known); guess != "" {
			msg += fmt.Sprintf("; did you mean %s?", guess)
		}
		ps = append(ps, Problem{File: file, Line: keyLineIn(lines, table, name), Setting: k.String(), Msg: msg})
	}
	if len(ps) > 0 {
		return World{}, ps
	}
	for _, p := range w.problems() {
		line := keyLineIn(lines, "", p.key)
		if p.node >= 0 {
			line = nodeKeyLine(lines, p.node, p.key)
		}
		ps = append(ps, Problem{File: file, Line: line, Setting: p.setting, Msg: p.msg})
	}
	if len(ps) > 0 {
		return World{}, ps
	}
	return w, nil
}

func settingNames(t reflect.Type) []string {
	var out []string
	for k := range settingFields(t) {
		out = append(out, k)
	}
	return out
}

// nodeKeyLine finds the line of key in the i-th [[node]] table, or of the
// table's header when the key is not written (an empty name, a weight left
// out); 0 if there is no such table.
func nodeKeyLine(lines []string, i int, key string) int {
	n, header := -1, 0
	for j, l := range lines {
		t := strings.TrimSpace(l)
		if c := strings.Index(t, "#"); c >= 0 && strings.HasPrefix(t, "[") {
			t = strings.TrimSpace(t[:c]) // [[node]]  # stone
		}
		if strings.HasPrefix(t, "[") {
			if n == i {
				break // past the table
			}
			if strings.Trim(t, "[] ") == "node" && strings.HasPrefix(t, "[[") {
				n++
				if n == i {
					header = j + 1
				}
			}
			continue
		}
		if m := keyLine.FindStringSubmatch(l); m != nil && n == i && m[2] == key {
			return j + 1
		}
	}
	return header
}

// keyLineIn finds the first line setting key, at the top level (table "")
// or inside a [table] or [[table]]; 0 if there is none.
func keyLineIn(lines []string, table, key string) int {
	in := ""
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "[") {
			in = strings.Trim(t, "[] ")
			continue
		}
		if m := keyLine.FindStringSubmatch(l); m != nil && in == table && m[2] == key {
			return i + 1
		}
	}
	return 0
}
