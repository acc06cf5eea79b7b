package cluster

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
)

// mlLog turns memberlist's "[LEVEL] memberlist: text" lines into slog
// records, and watches for the line memberlist writes when its own probe of
// a node fails, which is the only signal of suspicion it gives (Members'
// StateSuspect comes from it).
type mlLog struct {
	log     *slog.Logger
	suspect func(node string)
}

const suspectPrefix = "Suspect "
const suspectSuffix = " has failed, no acks received"

func (w *mlLog) Write(p []byte) (int, error) {
	line := string(bytes.TrimRight(p, "\n"))
	level := slog.LevelInfo
	for _, l := range []struct {
		tag string
		lv  slog.Level
	}{{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo}, {"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}, {"[ERROR]", slog.LevelError}} {
		if strings.HasPrefix(line, l.tag) {
			level = l.lv
			line = strings.TrimSpace(line[len(l.tag):])
			break
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	if strings.HasPrefix(line, suspectPrefix) && strings.HasSuffix(line, suspectSuffix) && w.suspect != nil {
		w.suspect(line[len(suspectPrefix) : len(line)-len(suspectSuffix)])
	}
	// Memberlist is chatty at INFO about routine events; one level down.
	// Its sends on a socket the node is closing are a shutdown, not a fault.
	if level == slog.LevelInfo || strings.Contains(line, "use of closed network connection") {
		level = slog.LevelDebug
	}
	if w.log.Enabled(context.Background(), level) {
		w.log.Log(context.Background(), level, line, "component", "memberlist")
	}
	return len(p), nil
}
