package chat

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLogFilesPerDaySearchMerge(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenLog(dir, "alice")
	if err != nil {
		t.Fatal(err)
	}
	d1 := time.Date(2025, 3, 4, 23, 59, 59, 0, time.Local)
	d2 := d1.Add(2 * time.Second)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(l.Append(Line{Time: d1, Sender: "bob", Tag: "private", Body: "Invoice one"}))
	must(l.Append(Line{Time: d2, Sender: "alice", Tag: "to bob", Body: "got the invoice"}))
	must(l.Append(Line{Time: d2, Sender: "alice", Body: "unrelated"}))
	must(l.Close())
	for _, f := range []string{"2025-03-04.log", "2025-03-05.log"} {
		if _, err := os.Stat(filepath.Join(dir, "alice", f)); err != nil {
			t.Fatalf("no %s: %v", f, err)
		}
	}
	hits, err := l.Search("INVOICE", 0)
	if err != nil || len(hits) != 2 || hits[0].Body != "Invoice one" || hits[1].Tag != "to bob" {
		t.Fatalf("%+v %v", hits, err)
	}
	if last, _ := l.Search("invoice", 1); len(last) != 1 || last[0].Body != "got the invoice" {
		t.Fatalf("limit: %+v", last)
	}
	server := []Line{
		{Time: d2.Add(300 * time.Millisecond), Sender: "alice", Tag: "to 2", Body: "got the invoice"}, // same message
		{Time: d1.Add(-time.Hour), Sender: "carol", Tag: "@ops", Body: "old invoice"},
	}
	m := Merge(hits, server)
	if len(m) != 3 || m[0].Sender != "carol" || m[1].Body != "Invoice one" || m[2].Tag != "to bob" {
		t.Fatalf("merge: %+v", m)
	}
}

func TestLogUserDirCannotEscape(t *testing.T) {
	dir := t.TempDir()
	for _, u := range []string{"..", ".", "a b", "名字", "..."} {
		l, err := OpenLog(dir, u)
		if err != nil {
			t.Fatal(err)
		}
		rel, err := filepath.Rel(dir, l.Dir())
		if err != nil || strings.HasPrefix(rel, "..") || rel == "." || strings.Contains(rel, string(filepath.Separator)) {
			t.Errorf("user %q: log dir %s", u, l.Dir())
		}
	}
}

func TestLogConcurrentAppends(t *testing.T) {
	l, err := OpenLog(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				_ = l.Append(Line{Time: t0, Sender: "s", Body: strings.Repeat("x", 100)})
			}
		}()
	}
	wg.Wait()
	hits, err := l.Search("xxxx", 0)
	if err != nil || len(hits) != 200 {
		t.Fatalf("%d lines, %v", len(hits), err)
	}
}

type collect struct {
	mu sync.Mutex
	l  []string
}

func (c *collect) Println(s string) { c.mu.Lock(); c.l = append(c.l, s); c.mu.Unlock() }

func TestReadLines(t *testing.T) {
	in := "one\r\ntwo\n" + strings.Repeat("x", MaxLine+10) + "\nthree"
	ch := make(chan string)
	p := &collect{}
	go readLines(t.Context(), strings.NewReader(in), ch, p)
	var got []string
	for l := range ch {
		got = append(got, l)
	}
	if strings.Join(got, "|") != "one|two|three" || len(p.l) != 1 || !strings.Contains(p.l[0], "over 1 MiB") {
		t.Fatalf("lines %q, printed %q", got, p.l)
	}
}
