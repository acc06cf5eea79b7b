package chat

import (
	"bufio"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Log is the local chat log of one user: a file a day, each message one
// line in the display form (Line.String), no pings, no colour:
//
//	<dir>/<user>/2025-01-02.log
//	[2025-01-02 09:15:00] bob (private)$ hi alice
//	[2025-01-02 09:15:07] alice (to bob)$ hi bob
//
// Dates are zero-padded (cim wrote 2025-1-2). Lines are appended with one
// write each, so a crash loses at most the line being written. A Log is
// safe for concurrent use.
type Log struct {
	dir string
	mu  struct {
		sync.Mutex
		day string   // the date of f
		f   *os.File // open for appending; nil until the first line
	}
}

// ErrLog is wrapped by the local log's errors.
var ErrLog = errors.New("chat: local log")

// logDayLayout names a day's file.
const logDayLayout = "2006-01-02"

// OpenLog opens (creating it) the log directory of user under dir.
func OpenLog(dir, user string) (*Log, error) {
	d := filepath.Join(dir, userDir(user))
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLog, err)
	}
	return &Log{dir: d}, nil
}

// userDir is a file name for a user name: names may hold any character
// but '/', '+', '#' and controls, so it is path-escaped, and "." and ".."
// cannot climb out.
func userDir(user string) string {
	s := url.PathEscape(user)
	if strings.Trim(s, ".") == "" {
		s = strings.ReplaceAll(s, ".", "%2E")
	}
	return s
}

// Dir is the user's log directory.
func (l *Log) Dir() string { return l.dir }

// Append writes one line to the file of its day (local time).
func (l *Log) Append(line Line) error {
	day := line.Time.Format(logDayLayout)
	text := line.String() + "\n"
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.f == nil || l.mu.day != day {
		if l.mu.f != nil {
			l.mu.f.Close()
			l.mu.f = nil
		}
		f, err := os.OpenFile(filepath.Join(l.dir, day+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrLog, err)
		}
		l.mu.f, l.mu.day = f, day
	}
	if _, err := l.mu.f.WriteString(text); err != nil {
		return fmt.Errorf("%w: %w", ErrLog, err)
	}
	return nil
}

// Close closes the current file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.f == nil {
		return nil
	}
	err := l.mu.f.Close()
	l.mu.f = nil
	return err
}

// Search returns the logged messages whose body or sender contains kw
// (Unicode case folding), oldest first, at most the newest limit of them
// (0: all).
func (l *Log) Search(kw string, limit int) ([]Line, error) {
	files, err := filepath.Glob(filepath.Join(l.dir, "????-??-??.log"))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLog, err)
	}
	sort.Strings(files) // zero-padded dates sort by time
	var out []Line
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return out, fmt.Errorf("%w: %w", ErrLog, err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		for sc.Scan() {
			ln, ok := ParseLine(sc.Text())
			if ok && (ContainsFold(ln.Body, kw) || ContainsFold(ln.Sender, kw)) {
				out = append(out, ln)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return out, fmt.Errorf("%w: %s: %w", ErrLog, name, err)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

// ParseLine reads a line in the display form back (false if it is not
// one).
func ParseLine(s string) (Line, bool) {
	const tsLen = len("[2006-01-02 15:04:05] ")
	if len(s) < tsLen+2 || s[0] != '[' || s[tsLen-2] != ']' || s[tsLen-1] != ' ' {
		return Line{}, false
	}
	t, err := time.ParseInLocation(TimeLayout, s[1:tsLen-2], time.Local)
	if err != nil {
		return Line{}, false
	}
	who, body, ok := strings.Cut(s[tsLen:], "$ ")
	if !ok {
		if !strings.HasSuffix(s, "$") {
			return Line{}, false
		}
		who, body = strings.TrimSuffix(s[tsLen:], "$"), ""
	}
	l := Line{Time: t, Body: body}
	if strings.HasSuffix(who, ")") {
		if i := strings.LastIndex(who, " ("); i >= 0 {
			for _, tag := range strings.Split(who[i+2:len(who)-1], ", ") {
				if tag == "offline" {
					l.Offline = true
				} else {
					l.Tag = tag
				}
			}
			who = who[:i]
		}
	}
	if i := strings.LastIndexAny(who, "@#"); i > 0 && who[i-1] == ' ' {
		l.Tag, who = who[i:], who[:i-1]
	}
	l.Sender = who
	return l, true
}

// Merge joins the hits of the local log and of the server's history: a
// message found in both (same second, sender and text) is shown once.
// The result is oldest first.
func Merge(local, server []Line) []Line {
	seen := make(map[string]bool, len(local)+len(server))
	out := make([]Line, 0, len(local)+len(server))
	for _, group := range [][]Line{local, server} {
		for _, l := range group {
			k := l.Time.Format(TimeLayout) + "\x00" + sanitize(l.Sender) + "\x00" + sanitize(l.Body)
			if !seen[k] {
				seen[k] = true
				out = append(out, l)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}
