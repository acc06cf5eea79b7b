package chat

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Kind is what a typed line asks for.
type Kind int

const (
	KindNone    Kind = iota // an empty line: nothing to do
	KindText                // plain text: to everyone online (cim's group chat)
	KindPrivate             // "userId;;text" or "name;;text"
	KindGroup               // ":g group;;text"
	KindAll                 // ":all": the command list (also for an unknown command)
	KindHelp                // ":help": the command list with examples
	KindOnline              // ":olu"
	KindQuit                // ":q!"
	KindSearch              // ":q keyword"
	KindAIOn                // ":ai"
	KindAIOff               // ":qai"
	KindPrefix              // ":pu prefix"
	KindInfo                // ":info"
	KindEmoji               // ":emoji [page]"
	KindDelay               // ":delay text seconds"
	KindJoin                // ":join group"
	KindLeave               // ":leave group"
	KindGroups              // ":groups"
	KindHistory             // ":history [user|@group]"
	KindUnknown             // an unknown ":" command
)

// Command is one parsed input line.
type Command struct {
	Kind Kind
	// To names the receiver: a user id or name (KindPrivate), a group
	// (KindGroup, KindJoin, KindLeave), or a conversation (KindHistory:
	// "" everyone, "@g" a group, else a user id or name).
	To string
	// Text is the message (KindText, KindPrivate, KindGroup), the keyword
	// (KindSearch), the prefix (KindPrefix) or the unknown command's name.
	Text string
	// Page is the emoji page, from 1.
	Page int
	// Delay is how long the server holds a KindDelay message; Inner is the
	// message itself (a KindText, KindPrivate or KindGroup command).
	Delay time.Duration
	Inner *Command
}

// ErrUsage is wrapped by the errors of lines that name a known command
// with wrong arguments (the text says the right form).
var ErrUsage = errors.New("chat: usage")

// MaxDelay bounds :delay (the server's own bound may be lower).
const MaxDelay = 366 * 24 * time.Hour

func usage(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, a...))
}

// Parse reads one input line with cim's syntax. A line not starting with
// ':' is a message: "to;;text" is private (to a user id, or a name), any
// other text goes to everyone. Unlike cim, "a;;b;;c" sends "b;;c" to a
// (only the first ";;" splits), and a line of blanks is nothing.
func Parse(line string) (Command, error) {
	line = strings.TrimRight(line, "\r\n")
	if strings.TrimSpace(line) == "" {
		return Command{Kind: KindNone}, nil
	}
	if !strings.HasPrefix(line, ":") {
		return parseMessage(line)
	}
	name, rest, _ := strings.Cut(line[1:], " ")
	rest = strings.TrimSpace(rest)
	switch name {
	case "q!":
		return Command{Kind: KindQuit}, nil
	case "q":
		if rest == "" {
			return Command{}, usage(":q keyword (search the history); :q! quits")
		}
		return Command{Kind: KindSearch, Text: rest}, nil
	case "all":
		return Command{Kind: KindAll}, nil
	case "help", "h", "?":
		return Command{Kind: KindHelp}, nil
	case "olu":
		return Command{Kind: KindOnline}, nil
	case "ai":
		return Command{Kind: KindAIOn}, nil
	case "qai":
		return Command{Kind: KindAIOff}, nil
	case "pu":
		if rest == "" {
			return Command{}, usage(":pu prefix (online users whose name starts with it)")
		}
		return Command{Kind: KindPrefix, Text: rest}, nil
	case "info":
		return Command{Kind: KindInfo}, nil
	case "emoji":
		page := 1
		if rest != "" {
			n, err := strconv.Atoi(rest)
			if err != nil || n < 1 {
				return Command{}, usage(":emoji page (a page number from 1, got %q)", rest)
			}
			page = n
		}
		return Command{Kind: KindEmoji, Page: page}, nil
	case "delay":
		return parseDelay(rest)
	case "g":
		to, text, ok := strings.Cut(rest, ";;")
		to = strings.TrimSpace(to)
		if !ok || to == "" || strings.TrimSpace(text) == "" {
			return Command{}, usage(":g group;;text")
		}
		return Command{Kind: KindGroup, To: to, Text: text}, nil
	case "join", "leave":
		if rest == "" {
			return Command{}, usage(":%s group", name)
		}
		k := KindJoin
		if name == "leave" {
			k = KindLeave
		}
		return Command{Kind: k, To: strings.TrimPrefix(rest, "@")}, nil
	case "groups":
		return Command{Kind: KindGroups}, nil
	case "history":
		return Command{Kind: KindHistory, To: rest}, nil
	}
	return Command{Kind: KindUnknown, Text: ":" + name}, nil
}

func parseMessage(line string) (Command, error) {
	to, text, ok := strings.Cut(line, ";;")
	if !ok {
		return Command{Kind: KindText, Text: line}, nil
	}
	to = strings.TrimSpace(to)
	switch {
	case to == "":
		return Command{}, usage("userId;;text or name;;text (a receiver before ;;)")
	case strings.TrimSpace(text) == "":
		return Command{}, usage("userId;;text or name;;text (a text after ;;)")
	}
	return Command{Kind: KindPrivate, To: to, Text: text}, nil
}

// parseDelay reads ":delay text seconds": the last word is the delay, all
// before it the message (cim took only one word), itself a line with
// cim's syntax, so ":delay bob;;see you 60" is private.
func parseDelay(rest string) (Command, error) {
	const form = ":delay text seconds (e.g. :delay stand-up! 60, :delay bob;;hi 10)"
	i := strings.LastIndexAny(rest, " \t")
	if i < 0 {
		return Command{}, usage(form)
	}
	text, secs := strings.TrimSpace(rest[:i]), rest[i+1:]
	f, err := strconv.ParseFloat(secs, 64)
	if err != nil || f <= 0 || f != f {
		return Command{}, usage("%s: %q is not a number of seconds over 0", form, secs)
	}
	d := time.Duration(f * float64(time.Second))
	if f > MaxDelay.Seconds() {
		return Command{}, usage("%s: over %v", form, MaxDelay)
	}
	if d < time.Millisecond {
		return Command{}, usage("%s: under a millisecond", form)
	}
	if text == "" || strings.HasPrefix(text, ":") && !strings.HasPrefix(text, ":g ") {
		return Command{}, usage(form)
	}
	var inner Command
	if strings.HasPrefix(text, ":g ") {
		inner, err = Parse(text)
	} else {
		inner, err = parseMessage(text)
	}
	if err != nil {
		return Command{}, err
	}
	return Command{Kind: KindDelay, Delay: d, Inner: &inner}, nil
}

// Commands lists every command with its syntax, for :all and :help.
var Commands = []struct{ Syntax, What string }{
	{"text", "send text to everyone online"},
	{"userId;;text", "private message to a user id (or name;;text)"},
	{":g group;;text", "message to a group you are in"},
	{":join group", "join a group (created if it does not exist)"},
	{":leave group", "leave a group"},
	{":groups", "the groups you are in"},
	{":olu", "online users"},
	{":pu prefix", "online users whose name starts with prefix"},
	{":q keyword", "search the history (local log and server), keyword highlighted"},
	{":history [user|@group]", "recent messages of a conversation (default: everyone)"},
	{":delay text seconds", "send text (any form above) after a delay, held by the server"},
	{":emoji [page]", "emoji aliases, 5 a page; type :alias: in a message"},
	{":ai / :qai", "AI mode on / off (a local bot answers your lines; nothing is sent)"},
	{":info", "your user id, name and connection"},
	{":all", "this list"},
	{":help", "this list with examples"},
	{":q!", "quit (delayed messages are already on the server)"},
}
