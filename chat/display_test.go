package chat

import (
	"strings"
	"testing"
	"time"

	"github.com/cimgo/cim/broker/wire"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.Local)

func TestLineRender(t *testing.T) {
	cases := []struct {
		l    Line
		want string
	}{
		{Line{Time: t0, Sender: "alice", Body: "hi"}, "[2025-01-02 03:04:05] alice$ hi"},
		{Line{Time: t0, Sender: "alice", Tag: "private", Body: "hi"}, "[2025-01-02 03:04:05] alice (private)$ hi"},
		{Line{Time: t0, Sender: "alice", Tag: "private", Offline: true, Body: "hi"}, "[2025-01-02 03:04:05] alice (private, offline)$ hi"},
		{Line{Time: t0, Sender: "alice", Tag: "@ops", Offline: true, Body: "x"}, "[2025-01-02 03:04:05] alice @ops (offline)$ x"},
		{Line{Time: t0, Sender: "dev-1", Tag: "#sensors/t1", Body: "21.5"}, "[2025-01-02 03:04:05] dev-1 #sensors/t1$ 21.5"},
		{Line{Time: t0, Sender: "bob", Tag: "to alice", Body: "yo"}, "[2025-01-02 03:04:05] bob (to alice)$ yo"},
		{Line{Time: t0, Sender: "eve", Body: "a\nb\x1b[2Jc"}, "[2025-01-02 03:04:05] eve$ a\uFFFDb\uFFFD[2Jc"},
		{Line{Time: t0, Sender: "eve", Body: "bad \xff utf8"}, "[2025-01-02 03:04:05] eve$ bad \uFFFD utf8"},
	}
	for _, c := range cases {
		if got := c.l.String(); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
		back, ok := ParseLine(c.want)
		if !ok || !back.Time.Equal(c.l.Time) || back.Sender != c.l.Sender || back.Tag != c.l.Tag || back.Offline != c.l.Offline {
			t.Errorf("ParseLine(%q) = %+v, %v", c.want, back, ok)
		}
	}
	col := Line{Time: t0, Sender: "alice", Body: "hi :smile:"}.Render(Style{Color: true, Emoji: true})
	if !strings.Contains(col, "\x1b[") || !strings.HasSuffix(col, "hi 😄") {
		t.Errorf("colour render %q", col)
	}
}

func TestHighlight(t *testing.T) {
	cases := []struct{ s, kw, want string }{
		{"the Invoice is due, invoice 7", "INVOICE", "the *Invoice* is due, *invoice* 7"},
		{"ΣΑΣ και σας", "σας", "*ΣΑΣ* και *σας*"},
		{"付款发票已到", "发票", "付款*发票*已到"},
		{"nothing", "x", "nothing"},
		{"aaa", "aa", "*aa*a"},
		{"k", "", "k"},
	}
	for _, c := range cases {
		if got := Highlight(c.s, c.kw, false); got != c.want {
			t.Errorf("Highlight(%q, %q) = %q, want %q", c.s, c.kw, got, c.want)
		}
	}
	if got := Highlight("an Invoice", "invoice", true); got != "an "+ansiHiMark+"Invoice"+ansiReset {
		t.Errorf("colour: %q", got)
	}
	if !HasPrefixFold("Zhāng", "zHĀ") || HasPrefixFold("Zhāng", "Zha") || HasPrefixFold("Z", "Zh") {
		t.Error("HasPrefixFold")
	}
}

func TestTagOf(t *testing.T) {
	names := func(id uint64) string { return map[uint64]string{2: "bob"}[id] }
	for _, c := range []struct {
		t    wire.Target
		want string
	}{
		{wire.ToUser(1), "private"}, {wire.ToUser(2), "to bob"}, {wire.ToGroup("ops"), "@ops"},
		{wire.ToTopic("a/b"), "#a/b"}, {wire.ToAll(), ""},
	} {
		if got := tagOf(c.t, 1, names); got != c.want {
			t.Errorf("tagOf(%+v) = %q, want %q", c.t, got, c.want)
		}
	}
}

func TestAIAnswer(t *testing.T) {
	for in, want := range map[string]string{
		"你好吗?":        "我好!",
		"在吗？":         "在！",
		"你吃饭了嘛?":      "我吃饭了!",
		"are you ok?": "are you ok!",
	} {
		if got := AIAnswer(in); got != want {
			t.Errorf("AIAnswer(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEmoji(t *testing.T) {
	if got := RenderEmoji("I am :smile: :nosuch: a:b :+1:"); got != "I am 😄 :nosuch: a:b 👍" {
		t.Errorf("RenderEmoji = %q", got)
	}
	if got := RenderEmoji("time 10:30:45"); got != "time 10:30:45" {
		t.Errorf("RenderEmoji = %q", got)
	}
	p1 := EmojiPage(1)
	if len(p1) != EmojiPerPage || EmojiPages() < 100 {
		t.Fatalf("page 1: %v, %d pages", p1, EmojiPages())
	}
	last := EmojiPage(EmojiPages())
	if len(last) == 0 || EmojiPage(EmojiPages()+1) != nil || EmojiPage(0) != nil {
		t.Fatal("page bounds")
	}
	for _, e := range p1 {
		if RenderEmoji(e.Alias) != e.Char {
			t.Errorf("%s does not render as %s", e.Alias, e.Char)
		}
	}
	if p2 := EmojiPage(2); p2[0].Alias <= p1[len(p1)-1].Alias {
		t.Error("pages not in order")
	}
}

func BenchmarkRender(b *testing.B) {
	l := Line{Time: t0, Sender: "alice", Tag: "@ops", Body: "deploy done :rocket: in 3 minutes, see the invoice"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = l.Render(Style{Emoji: true, Mark: "invoice"})
	}
}
