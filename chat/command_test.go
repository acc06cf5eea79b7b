package chat

import (
	"errors"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in   string
		want Command
	}{
		{"", Command{Kind: KindNone}},
		{"   \t", Command{Kind: KindNone}},
		{"hello everyone", Command{Kind: KindText, Text: "hello everyone"}},
		{"hello\r\n", Command{Kind: KindText, Text: "hello"}},
		{"42;;hi", Command{Kind: KindPrivate, To: "42", Text: "hi"}},
		{"bob ;;hi;;there", Command{Kind: KindPrivate, To: "bob", Text: "hi;;there"}},
		{"张三;;你好", Command{Kind: KindPrivate, To: "张三", Text: "你好"}},
		{":g ops;;deploy done", Command{Kind: KindGroup, To: "ops", Text: "deploy done"}},
		{":q!", Command{Kind: KindQuit}},
		{":q invoice 7", Command{Kind: KindSearch, Text: "invoice 7"}},
		{":all", Command{Kind: KindAll}},
		{":help", Command{Kind: KindHelp}},
		{":olu", Command{Kind: KindOnline}},
		{":ai", Command{Kind: KindAIOn}},
		{":qai", Command{Kind: KindAIOff}},
		{":pu Zh", Command{Kind: KindPrefix, Text: "Zh"}},
		{":info", Command{Kind: KindInfo}},
		{":emoji", Command{Kind: KindEmoji, Page: 1}},
		{":emoji 3", Command{Kind: KindEmoji, Page: 3}},
		{":join @ops", Command{Kind: KindJoin, To: "ops"}},
		{":leave ops", Command{Kind: KindLeave, To: "ops"}},
		{":groups", Command{Kind: KindGroups}},
		{":history", Command{Kind: KindHistory}},
		{":history @ops", Command{Kind: KindHistory, To: "@ops"}},
		{":xyz 1 2", Command{Kind: KindUnknown, Text: ":xyz"}},
		{"::", Command{Kind: KindUnknown, Text: "::"}},
	}
	for _, c := range cases {
		got, err := Parse(c.in)
		if err != nil || got.Kind != c.want.Kind || got.To != c.want.To || got.Text != c.want.Text || got.Page != c.want.Page {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func TestParseDelay(t *testing.T) {
	c, err := Parse(":delay stand-up in five minutes 300")
	if err != nil || c.Kind != KindDelay || c.Delay != 300*time.Second || c.Inner.Kind != KindText || c.Inner.Text != "stand-up in five minutes" {
		t.Fatalf("%+v %v", c, err)
	}
	c, err = Parse(":delay bob;;see you 1.5")
	if err != nil || c.Delay != 1500*time.Millisecond || c.Inner.Kind != KindPrivate || c.Inner.To != "bob" || c.Inner.Text != "see you" {
		t.Fatalf("%+v %v", c, err)
	}
	c, err = Parse(":delay :g ops;;standup 60")
	if err != nil || c.Inner.Kind != KindGroup || c.Inner.To != "ops" || c.Inner.Text != "standup" {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestParseUsageErrors(t *testing.T) {
	for _, in := range []string{
		";;text", "bob;;", "bob;;   ", ":q", ":pu", ":emoji x", ":emoji 0", ":g ops", ":g ;;x", ":g ops;;",
		":join", ":leave", ":delay", ":delay 10", ":delay hi", ":delay hi 0", ":delay hi -1", ":delay hi NaN",
		":delay hi Inf", ":delay hi 1e300", ":delay hi 0.0000001", ":delay :olu 5", ":delay bob;; 5",
	} {
		if c, err := Parse(in); !errors.Is(err, ErrUsage) {
			t.Errorf("Parse(%q) = %+v, %v; want a usage error", in, c, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"hi", "a;;b", ":g x;;y", ":delay a b 3", ":q k", ":emoji 2", ":delay :g a;;b 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err == nil && c.Kind == KindDelay && (c.Inner == nil || c.Delay <= 0 || c.Delay > MaxDelay) {
			t.Fatalf("Parse(%q) = %+v", s, c)
		}
		if l, ok := ParseLine(s); ok {
			_ = l.String()
		}
	})
}
