// Package deploy holds no code: its tests check the deployment files next
// to it, offline, with the real parsers of the tools that will read them.
//
//	../Dockerfile      buildkit's Dockerfile parser and parse-time linter,
//	                   plus the rules that matter here (pinned bases,
//	                   non-root USER, HEALTHCHECK, no ADD of URLs, ...)
//	k8s/cim.yaml       strict decoding into the Kubernetes API types
//	                   (unknown or duplicate fields are errors), plus
//	                   cross-references (selectors, ports, probes, volumes)
//	                   and the ConfigMap's cim.yaml through cim --check-config
//	cim.service        key checks, and systemd-analyze verify / security
//	                   where systemd-analyze is installed
//
// It is a module of its own so that the Kubernetes and buildkit libraries
// never enter the cim binary's dependency graph: `cd deploy && go test ./...`.
package deploy
