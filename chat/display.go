package chat

import (
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cimgo/cim/broker/wire"
)

// TimeLayout is cim's yyyy-MM-dd HH:mm:ss.
const TimeLayout = "2006-01-02 15:04:05"

// ANSI colours, used only when the output is a terminal.
const (
	ansiReset   = "\x1b[0m"
	ansiDim     = "\x1b[2m"
	ansiBold    = "\x1b[1m"
	ansiCyan    = "\x1b[36m"
	ansiMagenta = "\x1b[35m"
	ansiYellow  = "\x1b[33m"
	ansiGreen   = "\x1b[32m"
	ansiRed     = "\x1b[31m"
	ansiHiMark  = "\x1b[1;31m"
)

// Line is a message as shown and logged:
//
//	[2006-01-02 15:04:05] alice$ hello everyone
//	[2006-01-02 15:04:05] alice (private)$ hi bob
//	[2006-01-02 15:04:05] alice @ops$ deploy done
//	[2006-01-02 15:04:05] sensor-1 #sensors/t1$ 21.5
//	[2006-01-02 15:04:05] alice (private, offline)$ sent while you were away
//	[2006-01-02 15:04:05] bob (to alice)$ my own message, in the log
type Line struct {
	Time    time.Time
	Sender  string // the sender's name
	Tag     string // "private", "@ops", "#topic", "to alice", or ""
	Offline bool
	Body    string
}

// Style says how to render a Line.
type Style struct {
	Color bool // ANSI colours (a terminal)
	Emoji bool // :alias: shown as the emoji
	// Mark highlights every occurrence of this keyword (Unicode case
	// folding): in colour on a terminal, else as *keyword*.
	Mark string
}

// String renders l without colour or emoji (the log's form).
func (l Line) String() string { return l.Render(Style{}) }

// Render renders l.
func (l Line) Render(s Style) string {
	var b strings.Builder
	ts := "[" + l.Time.Format(TimeLayout) + "]"
	who := sanitize(l.Sender)
	var tags []string
	if l.Tag != "" && !strings.HasPrefix(l.Tag, "@") && !strings.HasPrefix(l.Tag, "#") {
		tags = append(tags, l.Tag)
	}
	if l.Offline {
		tags = append(tags, "offline")
	}
	if strings.HasPrefix(l.Tag, "@") || strings.HasPrefix(l.Tag, "#") {
		who += " " + sanitize(l.Tag)
	}
	if len(tags) > 0 {
		who += " (" + strings.Join(tags, ", ") + ")"
	}
	body := sanitize(l.Body)
	if s.Emoji {
		body = RenderEmoji(body)
	}
	if s.Color {
		c := ansiCyan
		switch {
		case l.Tag == "private":
			c = ansiMagenta
		case strings.HasPrefix(l.Tag, "@"):
			c = ansiGreen
		case strings.HasPrefix(l.Tag, "to "):
			c = ansiDim
		case l.Offline:
			c = ansiYellow
		}
		b.WriteString(ansiDim + ts + ansiReset + " " + ansiBold + c + who + "$" + ansiReset + " ")
	} else {
		b.WriteString(ts + " " + who + "$ ")
	}
	b.WriteString(Highlight(body, s.Mark, s.Color))
	return b.String()
}

// sanitize keeps a line one line and free of terminal escapes: control
// characters other than tab become U+FFFD, so a message can neither break
// the line format of scripts and the log nor move the cursor.
func sanitize(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexFunc(s, isControl) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isControl(r) {
			return '\uFFFD'
		}
		return r
	}, s)
}

func isControl(r rune) bool { return r != '\t' && unicode.IsControl(r) }

// Highlight marks every occurrence of kw in s, in colour or as *match*.
// Matching is rune by rune with simple Unicode case folding, as
// strings.EqualFold ("ΣΑΣ" finds "σας"; "ß" does not find "SS").
func Highlight(s, kw string, color bool) string {
	if kw == "" {
		return s
	}
	spans := findFold(s, kw)
	if len(spans) == 0 {
		return s
	}
	open, closeMark := "*", "*"
	if color {
		open, closeMark = ansiHiMark, ansiReset
	}
	var b strings.Builder
	at := 0
	for _, sp := range spans {
		b.WriteString(s[at:sp[0]])
		b.WriteString(open + s[sp[0]:sp[1]] + closeMark)
		at = sp[1]
	}
	b.WriteString(s[at:])
	return b.String()
}

// ContainsFold reports whether s contains kw under simple Unicode case
// folding.
func ContainsFold(s, kw string) bool { return kw == "" || len(findFold(s, kw)) > 0 }

// findFold returns the byte spans of the non-overlapping occurrences of kw
// in s, matched rune by rune with unicode.SimpleFold equivalence.
func findFold(s, kw string) [][2]int {
	n := utf8.RuneCountInString(kw)
	if n == 0 {
		return nil
	}
	var spans [][2]int
	for i := 0; i < len(s); {
		if end, ok := matchFoldAt(s, i, kw); ok {
			spans = append(spans, [2]int{i, end})
			i = end
			continue
		}
		_, w := utf8.DecodeRuneInString(s[i:])
		i += w
	}
	return spans
}

// matchFoldAt: does kw match s at byte i? It returns the end of the match.
func matchFoldAt(s string, i int, kw string) (int, bool) {
	for _, k := range kw {
		if i >= len(s) {
			return 0, false
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		if !equalFoldRune(r, k) {
			return 0, false
		}
		i += w
	}
	return i, true
}

func equalFoldRune(a, b rune) bool {
	if a == b {
		return true
	}
	for f := unicode.SimpleFold(a); f != a; f = unicode.SimpleFold(f) {
		if f == b {
			return true
		}
	}
	return false
}

// HasPrefixFold reports whether s starts with prefix under simple Unicode
// case folding (":pu Zh" finds "zhang" and "Zhāng"'s "ZH").
func HasPrefixFold(s, prefix string) bool {
	_, ok := matchFoldAt(s, 0, prefix)
	return ok
}

// tagOf is the Line tag of a message to target t, as received by me.
func tagOf(t wire.Target, me uint64, names func(uint64) string) string {
	switch t.Kind {
	case wire.KindUser:
		if t.User == me {
			return "private"
		}
		return "to " + names(t.User)
	case wire.KindGroup:
		return "@" + t.Name
	case wire.KindTopic:
		return "#" + t.Name
	}
	return ""
}

func idString(id uint64) string { return strconv.FormatUint(id, 10) }
