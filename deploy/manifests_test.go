package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// manifests strictly decodes every document of a multi-document YAML file
// into its Kubernetes API type: an unknown field, a duplicate field or a
// wrong type is an error, as `kubectl apply --validate=strict` would say.
type manifests struct {
	configMaps   []corev1.ConfigMap
	services     []corev1.Service
	statefulSets []appsv1.StatefulSet
	pdbs         []policyv1.PodDisruptionBudget
}

func decodeManifests(src []byte) (*manifests, error) {
	m := &manifests{}
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(src), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(doc, "")) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var err error
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 ConfigMap":
			var o corev1.ConfigMap
			err = yaml.UnmarshalStrict([]byte(doc), &o)
			m.configMaps = append(m.configMaps, o)
		case "v1 Service":
			var o corev1.Service
			err = yaml.UnmarshalStrict([]byte(doc), &o)
			m.services = append(m.services, o)
		case "apps/v1 StatefulSet":
			var o appsv1.StatefulSet
			err = yaml.UnmarshalStrict([]byte(doc), &o)
			m.statefulSets = append(m.statefulSets, o)
		case "policy/v1 PodDisruptionBudget":
			var o policyv1.PodDisruptionBudget
			err = yaml.UnmarshalStrict([]byte(doc), &o)
			m.pdbs = append(m.pdbs, o)
		default:
			return nil, fmt.Errorf("document %d: unexpected %s %s", i, tm.APIVersion, tm.Kind)
		}
		if err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i, tm.Kind, err)
		}
	}
	return m, nil
}

func selects(sel map[string]string, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// manifestProblems checks what strict decoding cannot: the objects refer
// to each other correctly and the pods are run the way cim needs.
func manifestProblems(m *manifests) []string {
	var ps []string
	bad := func(f string, a ...any) { ps = append(ps, fmt.Sprintf(f, a...)) }
	if len(m.statefulSets) != 1 || len(m.pdbs) != 1 || len(m.configMaps) != 1 {
		bad("want one StatefulSet, one PodDisruptionBudget and one ConfigMap")
		return ps
	}
	ss := m.statefulSets[0]
	pod := ss.Spec.Template
	if ss.Spec.Selector == nil || !selects(ss.Spec.Selector.MatchLabels, pod.Labels) {
		bad("StatefulSet selector does not select its own pods")
	}
	var headless, client *corev1.Service
	for i := range m.services {
		s := &m.services[i]
		if !selects(s.Spec.Selector, pod.Labels) {
			bad("Service %s does not select the pods", s.Name)
		}
		if s.Spec.ClusterIP == corev1.ClusterIPNone {
			headless = s
		} else {
			client = s
		}
	}
	switch {
	case headless == nil:
		bad("want a headless Service (clusterIP: None) for the StatefulSet")
	case headless.Name != ss.Spec.ServiceName:
		bad("StatefulSet serviceName %q is not the headless Service %q", ss.Spec.ServiceName, headless.Name)
	case !headless.Spec.PublishNotReadyAddresses:
		bad("the headless Service must publish not-ready addresses, or nodes cannot join before they are ready")
	}
	if client == nil {
		bad("want a client Service")
	}
	if len(pod.Spec.Containers) != 1 {
		bad("want one container")
		return ps
	}
	c := pod.Spec.Containers[0]
	if i := strings.LastIndex(c.Image, ":"); i < 0 || strings.HasSuffix(c.Image, ":latest") || strings.Contains(c.Image[i:], "/") {
		bad("image %q: want an explicit tag, not latest", c.Image)
	}
	ports := map[string]corev1.ContainerPort{}
	for _, p := range c.Ports {
		ports[p.Name] = p
	}
	for _, want := range []string{"mqtt", "mqtts", "native", "http", "gossip-tcp", "gossip-udp", "peer"} {
		if _, ok := ports[want]; !ok {
			bad("container lacks port %s", want)
		}
	}
	if p := ports["gossip-udp"]; p.Protocol != corev1.ProtocolUDP {
		bad("gossip-udp must be UDP")
	}
	for _, s := range m.services {
		for _, sp := range s.Spec.Ports {
			cp, ok := ports[sp.TargetPort.String()]
			if !ok {
				bad("Service %s port %s targets %q, not a container port name", s.Name, sp.Name, sp.TargetPort.String())
			} else if cp.Protocol != sp.Protocol && !(cp.Protocol == "" && sp.Protocol == "" || cp.Protocol == "" && sp.Protocol == corev1.ProtocolTCP || sp.Protocol == "" && cp.Protocol == corev1.ProtocolTCP) {
				bad("Service %s port %s: protocol %s targets a %s port", s.Name, sp.Name, sp.Protocol, cp.Protocol)
			}
		}
	}
	probe := func(name string, p *corev1.Probe, path string) {
		switch {
		case p == nil || p.HTTPGet == nil:
			bad("want an HTTP %s probe", name)
		case p.HTTPGet.Path != path:
			bad("%s probe on %s, want %s", name, p.HTTPGet.Path, path)
		case p.HTTPGet.Port.String() != "http":
			bad("%s probe port %s, want the http port", name, p.HTTPGet.Port.String())
		}
	}
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("readiness", c.ReadinessProbe, "/readyz")
	probe("startup", c.StartupProbe, "/healthz")
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		bad("want cpu and memory requests and a memory limit")
	}
	psc, csc := pod.Spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		bad("pod securityContext: want runAsNonRoot and a non-zero runAsUser")
	}
	if psc != nil && (psc.FSGroup == nil || psc.RunAsUser == nil || *psc.FSGroup != *psc.RunAsUser) {
		bad("pod securityContext: want fsGroup so the volume is writable by the user")
	}
	if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
		csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
		csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
		bad("container securityContext: want no privilege escalation, a read-only root and all capabilities dropped")
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.Name] = vm
	}
	var claim bool
	for _, vct := range ss.Spec.VolumeClaimTemplates {
		if vct.Name == "data" && !vct.Spec.Resources.Requests.Storage().IsZero() {
			claim = true
		}
	}
	if !claim || mounts["data"].MountPath != "/data" {
		bad("want a volumeClaimTemplate data with a size, mounted at /data")
	}
	var cmVolume string
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == m.configMaps[0].Name {
			cmVolume = v.Name
		}
	}
	if cmVolume == "" || mounts[cmVolume].MountPath == "" || !slices.Contains(c.Args, "--config="+mounts[cmVolume].MountPath+"/cim.yaml") {
		bad("the ConfigMap must be mounted where --config points")
	}
	if !slices.Contains(c.Args, "--data-dir=/data") {
		bad("want --data-dir=/data")
	}
	join := ""
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--join="); ok {
			join = v
		}
	}
	if headless != nil && !strings.HasPrefix(join, headless.Name+".") {
		bad("--join=%q: want the headless Service's DNS name", join)
	}
	pdb := m.pdbs[0]
	if pdb.Spec.Selector == nil || !selects(pdb.Spec.Selector.MatchLabels, pod.Labels) {
		bad("PodDisruptionBudget does not select the pods")
	}
	if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
		bad("PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
	}
	return ps
}

const manifestFile = "k8s/cim.yaml"

func TestManifests(t *testing.T) {
	src, err := os.ReadFile(manifestFile)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeManifests(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range manifestProblems(m) {
		t.Error(p)
	}
}

// TestManifestChecksCatch: strict decoding and each cross-check fail on a
// manifest that breaks them.
func TestManifestChecksCatch(t *testing.T) {
	src, err := os.ReadFile(manifestFile)
	if err != nil {
		t.Fatal(err)
	}
	good := string(src)
	for want, bad := range map[string]string{
		`unknown field "livenesProbe"`:        strings.Replace(good, "livenessProbe:", "livenesProbe:", 1),
		"cannot unmarshal":                    strings.Replace(good, "replicas: 3", "replicas: three", 1),
		"headless":                            strings.Replace(good, "clusterIP: None", "clusterIP: \"\"", 1),
		"not-ready":                           strings.Replace(good, "publishNotReadyAddresses: true", "publishNotReadyAddresses: false", 1),
		"readiness probe":                     strings.Replace(good, "path: /readyz", "path: /healthz", 1),
		"runAsNonRoot":                        strings.Replace(good, "runAsNonRoot: true", "runAsNonRoot: false", 1),
		"read-only root":                      strings.Replace(good, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", 1),
		"not a container port name":           strings.Replace(good, "targetPort: mqtts", "targetPort: tls", 1),
		"mounted at /data":                    strings.Replace(good, "mountPath: /data", "mountPath: /var/lib/cim", 1),
		"explicit tag":                        strings.Replace(good, "cim:0.1.0", "cim:latest", 1),
		"PodDisruptionBudget does not select": strings.Replace(good, "maxUnavailable: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: cim", "maxUnavailable: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: other", 1),
	} {
		m, err := decodeManifests([]byte(bad))
		var got string
		if err != nil {
			got = err.Error()
		} else {
			got = strings.Join(manifestProblems(m), "\n")
		}
		if !strings.Contains(got, want) {
			t.Errorf("%q not caught: %s", want, got)
		}
	}
}

// TestManifestConfigWithCim runs the real `cim server --check-config` on
// the ConfigMap's cim.yaml with the StatefulSet's flags and the cluster
// secret its pods get from the Secret: every key and flag must be one cim
// knows and accepts.
func TestManifestConfigWithCim(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cim")
	}
	src, err := os.ReadFile(manifestFile)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeManifests(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "cim")
	build := exec.Command("go", "build", "-o", bin, "./cmd/cim")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "cim.yaml")
	if err := os.WriteFile(cfg, []byte(m.configMaps[0].Data["cim.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "server", "--config", cfg, "--check-config").CombinedOutput(); err != nil {
		t.Fatalf("the ConfigMap's cim.yaml: %v\n%s", err, out)
	}
	env := strings.NewReplacer("$(POD_NAME)", "cim-0", "$(POD_NAMESPACE)", "default", "/etc/cim/cim.yaml", cfg, "/data", filepath.Join(dir, "data"))
	args := []string{}
	for _, a := range m.statefulSets[0].Spec.Template.Spec.Containers[0].Args {
		args = append(args, env.Replace(a))
	}
	c := m.statefulSets[0].Spec.Template.Spec.Containers[0]
	secret := false
	for _, e := range c.Env {
		if e.Name == "CIM_CLUSTER_SECRET" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name != "" {
			secret = true
		}
	}
	if !secret {
		t.Errorf("the StatefulSet's container has no CIM_CLUSTER_SECRET from a Secret: a clustered node refuses to start without one")
	}
	cmd := exec.Command(bin, append(args, "--check-config")...)
	cmd.Env = append(os.Environ(), "CIM_CLUSTER_SECRET=0123456789abcdef0123456789abcdef")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("the StatefulSet's args: %v\n%s", err, out)
	}
}
