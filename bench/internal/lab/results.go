package lab

import (
	"fmt"
	"os"
	"strings"
)

// ReplaceSection writes body into the file at path between the lines
// "<!-- NAME:begin -->" and "<!-- NAME:end -->", replacing what was there,
// or appends the marked section when the file has none. Each bench program
// owns one section of bench/RESULTS.md this way, so that one program's run
// leaves the others' results in place.
func ReplaceSection(path, name, body string) error {
	begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("results %s: %w", path, err)
	}
	text := string(old)
	section := begin + "\n" + strings.TrimRight(body, "\n") + "\n" + end
	i := strings.Index(text, begin)
	j := strings.Index(text, end)
	switch {
	case i >= 0 && j > i:
		text = text[:i] + section + text[j+len(end):]
	case i >= 0 || j >= 0:
		return fmt.Errorf("results %s: section %q has only one of its markers", path, name)
	default:
		if text != "" && !strings.HasSuffix(text, "\n") {
			text += "\n"
		}
		if text != "" {
			text += "\n"
		}
		text += section + "\n"
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return fmt.Errorf("results %s: %w", path, err)
	}
	return nil
}
