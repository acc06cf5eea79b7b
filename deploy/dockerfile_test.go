package deploy

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// parseDockerfile parses and lints a Dockerfile the way `docker build`
// does before building; every parser or linter warning is returned.
func parseDockerfile(t *testing.T, src string) ([]instructions.Stage, []instructions.ArgCommand, []string) {
	t.Helper()
	res, err := parser.Parse(strings.NewReader(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	var warnings []string
	for _, w := range res.Warnings {
		warnings = append(warnings, w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, _ []parser.Range) {
		warnings = append(warnings, rule+": "+msg)
	}})
	stages, metaArgs, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("instructions: %v", err)
	}
	return stages, metaArgs, warnings
}

// dockerfileProblems applies the rules that matter for cim's image.
func dockerfileProblems(t *testing.T, src string) []string {
	t.Helper()
	stages, metaArgs, problems := parseDockerfile(t, src)
	if len(stages) < 2 {
		return append(problems, "want a multi-stage build (build, then a minimal runtime)")
	}
	args := map[string]string{}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if kv.Value != nil {
				args[kv.Key] = *kv.Value
			}
		}
	}
	expand := regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)
	names := map[string]bool{}
	for i, st := range stages {
		base := expand.ReplaceAllStringFunc(st.BaseName, func(m string) string {
			return args[expand.FindStringSubmatch(m)[1]]
		})
		if st.Name != "" {
			names[strings.ToLower(st.Name)] = true
		}
		if !names[strings.ToLower(base)] && base != "scratch" && !pinned(base) {
			problems = append(problems, "stage "+st.Name+": base image "+base+" is not pinned (want name:tag, not latest, or @sha256:)")
		}
		for _, c := range st.Commands {
			switch c := c.(type) {
			case *instructions.AddCommand:
				problems = append(problems, "ADD "+strings.Join(c.SourcePaths, " ")+": use COPY (ADD fetches URLs and unpacks archives)")
			case *instructions.CopyCommand:
				if c.From != "" && !names[strings.ToLower(c.From)] {
					problems = append(problems, "COPY --from="+c.From+": no such stage")
				}
			case *instructions.RunCommand:
				if i < len(stages)-1 && strings.Contains(strings.Join(c.CmdLine, " "), "go build") &&
					!strings.Contains(strings.Join(c.CmdLine, " "), "CGO_ENABLED=0") {
					problems = append(problems, "go build without CGO_ENABLED=0: the binary would not be static")
				}
			}
		}
	}
	final := stages[len(stages)-1]
	var user string
	var health *instructions.HealthCheckCommand
	var exposed []string
	var volumes []string
	var entry *instructions.EntrypointCommand
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.HealthCheckCommand:
			health = c
		case *instructions.ExposeCommand:
			exposed = append(exposed, c.Ports...)
		case *instructions.VolumeCommand:
			volumes = append(volumes, c.Volumes...)
		case *instructions.EntrypointCommand:
			entry = c
		case *instructions.RunCommand:
			problems = append(problems, "RUN in the runtime stage: distroless has no shell")
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "root" || uid == "0" {
		problems = append(problems, "the runtime stage must set USER to a non-root user, got "+user)
	}
	if health == nil || len(health.Health.Test) < 2 || health.Health.Test[0] != "CMD" {
		problems = append(problems, "want a HEALTHCHECK CMD in exec form (no shell in distroless)")
	} else if !slices.Contains(health.Health.Test, "health") || !strings.Contains(strings.Join(health.Health.Test, " "), "/healthz") {
		problems = append(problems, "HEALTHCHECK must run `cim health` against /healthz")
	}
	for _, p := range []string{"1883/tcp", "8883/tcp", "9000/tcp", "8083/tcp", "7946/tcp", "7946/udp", "7947/tcp"} {
		if !slices.Contains(exposed, p) && !(strings.HasSuffix(p, "/tcp") && slices.Contains(exposed, strings.TrimSuffix(p, "/tcp"))) {
			problems = append(problems, "EXPOSE lacks "+p)
		}
	}
	if !slices.Contains(volumes, "/data") {
		problems = append(problems, "want VOLUME /data")
	}
	if entry == nil || entry.PrependShell {
		problems = append(problems, "want ENTRYPOINT in exec form")
	}
	return problems
}

func pinned(image string) bool {
	if strings.Contains(image, "@sha256:") {
		return true
	}
	last := image[strings.LastIndex(image, "/")+1:]
	_, tag, ok := strings.Cut(last, ":")
	return ok && tag != "" && tag != "latest"
}

func TestDockerfile(t *testing.T) {
	src, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range dockerfileProblems(t, string(src)) {
		t.Error(p)
	}
	ignore, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".git", "bin/", "data/"} {
		if !slices.Contains(strings.Fields(string(ignore)), want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
}

// TestDockerfileRulesCatch: each rule fires on a Dockerfile that breaks it.
func TestDockerfileRulesCatch(t *testing.T) {
	good := "FROM golang:1.26.8 AS build\nRUN CGO_ENABLED=0 go build -o /cim .\n" +
		"FROM gcr.io/distroless/static-debian12:nonroot\nCOPY --from=build /cim /cim\nUSER 65532\nVOLUME /data\n" +
		"EXPOSE 1883 8883 9000 8083 7946/tcp 7946/udp 7947\n" +
		"HEALTHCHECK CMD [\"/cim\", \"health\", \"--url\", \"http://127.0.0.1:8083/healthz\"]\nENTRYPOINT [\"/cim\"]\n"
	if p := dockerfileProblems(t, good); len(p) > 0 {
		t.Fatalf("the good one: %q", p)
	}
	for want, bad := range map[string]string{
		"not pinned":          strings.Replace(good, "golang:1.26.8", "golang", 1),
		"latest":              strings.Replace(good, "nonroot", "latest", 1),
		"non-root":            strings.Replace(good, "USER 65532", "USER root", 1),
		"USER to a non-root":  strings.Replace(good, "USER 65532\n", "", 1),
		"HEALTHCHECK":         strings.Replace(good, "HEALTHCHECK CMD", "HEALTHCHECK NONE\n#", 1),
		"use COPY":            strings.Replace(good, "COPY --from=build /cim /cim", "ADD https://example.com/cim /cim", 1),
		"CGO_ENABLED=0":       strings.Replace(good, "CGO_ENABLED=0 ", "", 1),
		"EXPOSE lacks 7946/u": strings.Replace(good, " 7946/udp", "", 1),
		"VOLUME /data":        strings.Replace(good, "VOLUME /data\n", "", 1),
		"no such stage":       strings.Replace(good, "--from=build", "--from=builder", 1),
		"multi-stage":         good[strings.Index(good, "FROM gcr"):],
		"exec form":           strings.Replace(good, `ENTRYPOINT ["/cim"]`, "ENTRYPOINT /cim", 1),
		"casing":              strings.Replace(good, "AS build", "as build", 1), // buildkit's FromAsCasing
	} {
		p := strings.Join(dockerfileProblems(t, bad), "\n")
		if !strings.Contains(p, want) && !strings.Contains(strings.ToLower(p), strings.ToLower(want)) {
			t.Errorf("%q not caught: %q", want, p)
		}
	}
}
