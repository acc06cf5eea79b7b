package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
)

// newLogger builds the process logger: text or JSON on w, at level (which
// a reload may change later through the returned LevelVar). Every line has
// each key once, and durations are milliseconds under a key ending in _ms.
func newLogger(level, format string, w io.Writer) (*slog.Logger, *slog.LevelVar, error) {
	lv := new(slog.LevelVar)
	if level != "" {
		var l slog.Level
		if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
			return nil, nil, fmt.Errorf("%w: log_level: want debug, info, warn or error, got %q", errConfig, level)
		}
		lv.Set(l)
	}
	o := &slog.HandlerOptions{Level: lv, ReplaceAttr: msDurations}
	var h slog.Handler
	switch format {
	case "", "text":
		h = slog.NewTextHandler(w, o)
	case "json":
		h = slog.NewJSONHandler(w, o)
	default:
		return nil, nil, fmt.Errorf("%w: log_format: want text or json, got %q", errConfig, format)
	}
	return slog.New(&uniqueKeys{inner: h}), lv, nil
}

// msDurations prints a duration as milliseconds (a float, to the
// microsecond) under its key plus "_ms": "took_ms=12.5", not "took=12500000"
// in JSON or "took=12.5ms" in text, so both formats read and parse alike.
func msDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindDuration {
		return a
	}
	key := a.Key
	if !strings.HasSuffix(key, "_ms") {
		key += "_ms"
	}
	return slog.Float64(key, math.Round(float64(a.Value.Duration().Microseconds()))/1e3)
}

// uniqueKeys is a slog.Handler that writes each key once: a key given again
// (by a nested With, as storage's pebble logger re-sets "component", or in
// the record itself) replaces the earlier value where it stood. slog's own
// handlers write both, which makes JSON with a duplicated key.
type uniqueKeys struct {
	inner slog.Handler
	attrs []slog.Attr // from WithAttrs since the last group; keys unique
}

func (h *uniqueKeys) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *uniqueKeys) WithAttrs(as []slog.Attr) slog.Handler {
	return &uniqueKeys{inner: h.inner, attrs: mergeAttrs(h.attrs, as)}
}

func (h *uniqueKeys) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	// Keys outside the group are final once the group opens.
	return &uniqueKeys{inner: h.inner.WithAttrs(h.attrs).WithGroup(name)}
}

func (h *uniqueKeys) Handle(ctx context.Context, r slog.Record) error {
	rec := make([]slog.Attr, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool { rec = append(rec, a); return true })
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(mergeAttrs(h.attrs, rec)...)
	return h.inner.Handle(ctx, out)
}

// mergeAttrs appends as to base; a key already present is replaced in place.
func mergeAttrs(base, as []slog.Attr) []slog.Attr {
	out := append([]slog.Attr(nil), base...)
next:
	for _, a := range as {
		if a.Equal(slog.Attr{}) {
			continue
		}
		for i := range out {
			if out[i].Key == a.Key && a.Key != "" {
				out[i] = a
				continue next
			}
		}
		out = append(out, a)
	}
	return out
}
