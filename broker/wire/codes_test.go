package wire

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestCodes(t *testing.T) {
	seen := map[Code]bool{}
	last := Code(0)
	for _, c := range Codes() {
		if seen[c] {
			t.Errorf("code %d listed twice", c)
		}
		seen[c] = true
		if c <= last {
			t.Errorf("Codes out of order at %d", c)
		}
		last = c
		if !c.Known() || strings.HasPrefix(c.String(), "code ") {
			t.Errorf("code %d has no text", c)
		}
		if want := "wire: " + strconv.Itoa(int(c)) + " "; !strings.HasPrefix(c.Error(), want) {
			t.Errorf("Error() = %q", c.Error())
		}
	}
	if len(seen) != len(codeText) {
		t.Errorf("Codes lists %d codes, codeText has %d", len(seen), len(codeText))
	}
	if Code(1234).Known() || Code(1234).String() != "code 1234" {
		t.Errorf("unknown code: %q", Code(1234).String())
	}
	if CodeOK.Err() != nil || CodeOffline.Err() != CodeOffline {
		t.Errorf("Err: %v %v", CodeOK.Err(), CodeOffline.Err())
	}
	wrapped := fmt.Errorf("send to user 5: %w", CodeOffline)
	if !errors.Is(wrapped, CodeOffline) || CodeOf(wrapped) != CodeOffline {
		t.Errorf("wrapped code lost: %v", wrapped)
	}
	if CodeOf(nil) != CodeOK || CodeOf(errors.New("x")) != CodeFailure {
		t.Errorf("CodeOf of nil / plain error")
	}
}

// The package doc is the reference: it must list every code (with the
// closes mark exactly where ClosesConnection says) and every frame type.
func TestDocTables(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile(`(?m)^//\t(\d{4})  (\w+)\s+(closes)?\s`)
	inDoc := map[Code]bool{}
	for _, m := range row.FindAllSubmatch(doc, -1) {
		n, _ := strconv.Atoi(string(m[1]))
		c := Code(n)
		inDoc[c] = true
		if !c.Known() {
			t.Errorf("doc lists code %d, which the package does not define", c)
		}
		if closes := len(m[3]) > 0; closes != c.ClosesConnection() {
			t.Errorf("doc says code %d closes=%v, ClosesConnection says %v", c, closes, c.ClosesConnection())
		}
	}
	for _, c := range Codes() {
		if !inDoc[c] {
			t.Errorf("code %d (%s) missing from the doc's table", c, c)
		}
	}
	for ty := Type(1); ty <= maxType; ty++ {
		want := fmt.Sprintf("0x%02x  %s", byte(ty), ty)
		if !strings.Contains(string(doc), want) {
			t.Errorf("doc's frame type table lacks %q", want)
		}
	}
}

func TestTypeAndTarget(t *testing.T) {
	if TypeDeliver.String() != "deliver" || Type(0x55).String() != "type 0x55" {
		t.Errorf("Type.String: %s %s", TypeDeliver, Type(0x55))
	}
	for _, c := range []struct {
		t    Target
		want string
	}{
		{ToUser(42), "cim/u/42"}, {ToGroup("ops"), "cim/g/ops"}, {ToTopic("s/1"), "s/1"}, {ToAll(), "cim/all"}, {Target{Kind: 9}, ""},
	} {
		if got := c.t.Topic(); got != c.want {
			t.Errorf("%+v.Topic() = %q, want %q", c.t, got, c.want)
		}
	}
	var f Frame
	for ty := Type(1); ty <= maxType; ty++ {
		f.Type = ty
		if b := f.Body(); b == nil || b.Type() != ty {
			t.Errorf("Frame.Body for %v: %v", ty, b)
		}
	}
	f.Type = 0x33
	if f.Body() != nil {
		t.Errorf("Frame.Body for an unknown type is not nil")
	}
}
