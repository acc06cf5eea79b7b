package chat

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/chzyer/readline"
)

// MaxLine bounds an input line in line mode; a longer one is refused
// with an error line (the server refuses frames much smaller anyway).
const MaxLine = 1 << 20

// writerPrinter prints whole lines to a writer, one at a time.
type writerPrinter struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *writerPrinter) Println(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	io.WriteString(p.w, line+"\n")
}

// RunLines is cim chat without a terminal: it reads commands line by line
// from in and prints every received message as one line to out, so a
// script can drive it. The end of in is :q!. It returns nil after :q!,
// the end of in or ctx's end, and the reason when the session ended by
// itself (or could not start: see ExitCode).
func RunLines(ctx context.Context, opts Options, in io.Reader, out io.Writer) error {
	p := &writerPrinter{w: out}
	s, err := Start(ctx, opts, p)
	if err != nil {
		return err
	}
	defer s.Close()
	s.greet()
	lines := make(chan string)
	go readLines(ctx, in, lines, p) // ends at in's end (a pipe's writer closing)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.Done():
			return s.Err()
		case line, ok := <-lines:
			if !ok || s.Handle(ctx, line) {
				return nil
			}
		}
	}
}

// readLines sends each line of in to lines and closes it at the end;
// lines over MaxLine are reported and skipped.
func readLines(ctx context.Context, in io.Reader, lines chan<- string, p Printer) {
	defer close(lines)
	r := bufio.NewReaderSize(in, 64<<10)
	var buf []byte
	tooLong := false
	for {
		chunk, err := r.ReadSlice('\n')
		if len(buf)+len(chunk) > MaxLine {
			tooLong, buf = true, buf[:0]
		} else if !tooLong {
			buf = append(buf, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if len(buf) > 0 || tooLong || err == nil {
			if tooLong {
				p.Println("error: line over 1 MiB skipped")
			} else {
				select {
				case lines <- string(bytes.TrimRight(buf, "\r\n")):
				case <-ctx.Done():
					return
				}
			}
		}
		buf, tooLong = buf[:0], false
		if err != nil {
			return
		}
	}
}

// greet prints the login line, the first line of every session.
func (s *Session) greet() {
	i := s.c.Info()
	s.info("logged in as %s (user %d) at %s, node %s; :help lists the commands", i.UserName, i.UserID, i.Addr, i.Node)
}

// TerminalIO is the terminal cim chat runs on.
type TerminalIO struct {
	In       *os.File // read in raw mode
	Out, Err io.Writer
}

// RunTerminal is cim chat on a terminal: line editing and input history
// (kept in the log directory) with a prompt that stays at the bottom
// while messages arrive above it; colours. Ctrl-D or :q! quits, Ctrl-C
// clears the line (or quits on an empty one).
func RunTerminal(ctx context.Context, opts Options, t TerminalIO) error {
	opts.Color = true
	cfg := &readline.Config{
		Prompt:            ansiBold + opts.User + "> " + ansiReset,
		HistorySearchFold: true,
		AutoComplete:      completer(),
		InterruptPrompt:   "^C",
		EOFPrompt:         ":q!",
		UniqueEditLine:    true, // the sent line is shown as a message instead
		Stdin:             t.In,
		Stdout:            t.Out,
		Stderr:            t.Err,
	}
	if opts.LogDir != "" {
		cfg.HistoryFile = filepath.Join(opts.LogDir, userDir(opts.User), "input_history")
	}
	rl, err := readline.NewEx(cfg)
	if err != nil {
		return err
	}
	defer rl.Close()
	p := &writerPrinter{w: rl.Stdout()}
	s, err := Start(ctx, opts, p)
	if err != nil {
		return err
	}
	defer s.Close()
	s.echo = true
	s.greet()
	stop := context.AfterFunc(ctx, func() { rl.Close() })
	defer stop()
	go func() {
		select {
		case <-s.Done():
			rl.Close()
		case <-ctx.Done():
		}
	}()
	for {
		line, err := rl.Readline()
		switch {
		case errors.Is(err, readline.ErrInterrupt):
			if line == "" {
				return s.Err()
			}
			continue
		case err != nil: // io.EOF (Ctrl-D) or closed
			return s.Err()
		}
		if s.Handle(ctx, line) {
			return nil
		}
	}
}

func completer() readline.AutoCompleter {
	var items []readline.PrefixCompleterInterface
	for _, c := range Commands {
		for _, form := range strings.Split(c.Syntax, " / ") {
			if strings.HasPrefix(form, ":") {
				name, _, _ := strings.Cut(form, " ")
				items = append(items, readline.PcItem(name))
			}
		}
	}
	return readline.NewPrefixCompleter(items...)
}
