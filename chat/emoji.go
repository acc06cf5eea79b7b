package chat

import (
	"sort"
	"strings"
	"sync"

	"github.com/kyokomi/emoji/v2"
)

// EmojiPerPage is how many aliases :emoji shows a page (cim's 5).
const EmojiPerPage = 5

// Emoji is one alias and what it renders as.
type Emoji struct {
	Alias string // ":smile:"
	Char  string // "😄"
}

var emojiIndex = sync.OnceValue(func() []Emoji {
	m := emoji.CodeMap()
	out := make([]Emoji, 0, len(m))
	for a, c := range m {
		out = append(out, Emoji{a, c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Alias < out[j].Alias })
	return out
})

// EmojiPages is the number of :emoji pages.
func EmojiPages() int { return (len(emojiIndex()) + EmojiPerPage - 1) / EmojiPerPage }

// EmojiPage lists page p (from 1) of the aliases, in alphabetical order;
// nil past the last page.
func EmojiPage(p int) []Emoji {
	all := emojiIndex()
	lo := (p - 1) * EmojiPerPage
	if p < 1 || lo >= len(all) {
		return nil
	}
	return all[lo:min(lo+EmojiPerPage, len(all))]
}

// RenderEmoji replaces every known :alias: in s by its emoji. Messages
// travel with the alias text (what the sender typed); each receiver
// renders it, so a client without emoji still reads ":smile:".
func RenderEmoji(s string) string {
	if strings.Count(s, ":") < 2 {
		return s
	}
	codes := emoji.CodeMap()
	var b strings.Builder
	for {
		i := strings.IndexByte(s, ':')
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i+1:], ':')
		if j < 0 {
			break
		}
		alias := s[i : i+j+2]
		if c, ok := codes[alias]; ok && !strings.ContainsAny(alias, " \t") {
			b.WriteString(s[:i])
			b.WriteString(c)
			s = s[i+j+2:]
			continue
		}
		// not an alias: keep the first colon, look again from the second
		b.WriteString(s[:i+j+1])
		s = s[i+j+1:]
	}
	b.WriteString(s)
	return b.String()
}
