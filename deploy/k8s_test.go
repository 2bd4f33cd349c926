package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/sandboxd/sandboxd/internal/daemon"
)

// manifests are deploy/k8s's objects, each decoded strictly into its k8s.io/api type.
type manifests struct {
	daemonSets   []*appsv1.DaemonSet
	statefulSets []*appsv1.StatefulSet
	services     []*corev1.Service
	configMaps   map[string]*corev1.ConfigMap
	accounts     map[string]*corev1.ServiceAccount
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// strict decodes JSON into v, refusing any field v's type lacks (a typo'd key would
// otherwise vanish on kubectl apply's client side or be pruned by the API server).
func strict(js []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	m := manifests{configMaps: map[string]*corev1.ConfigMap{}, accounts: map[string]*corev1.ServiceAccount{}}
	files, _ := filepath.Glob("k8s/*.yaml")
	if len(files) == 0 {
		t.Fatal("no manifests in deploy/k8s")
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range docSep.Split(string(raw), -1) {
			if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")) == "" {
				continue
			}
			js, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			var tm metav1.TypeMeta
			if err := json.Unmarshal(js, &tm); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			where := fmt.Sprintf("%s: %s %s", f, tm.APIVersion, tm.Kind)
			var obj any
			switch tm.APIVersion + "/" + tm.Kind {
			case "apps/v1/DaemonSet":
				o := &appsv1.DaemonSet{}
				m.daemonSets, obj = append(m.daemonSets, o), o
			case "apps/v1/StatefulSet":
				o := &appsv1.StatefulSet{}
				m.statefulSets, obj = append(m.statefulSets, o), o
			case "v1/Service":
				o := &corev1.Service{}
				m.services, obj = append(m.services, o), o
			case "v1/ConfigMap":
				o := &corev1.ConfigMap{}
				defer func() { m.configMaps[o.Name] = o }()
				obj = o
			case "v1/ServiceAccount":
				o := &corev1.ServiceAccount{}
				defer func() { m.accounts[o.Name] = o }()
				obj = o
			default:
				t.Fatalf("%s: a kind this test does not know; add it", where)
			}
			if err := strict(js, obj); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if meta := obj.(metav1.Object); meta.GetName() == "" || meta.GetNamespace() != "sandboxd" {
				t.Errorf("%s: name %q namespace %q, want a name in namespace sandboxd", where, meta.GetName(), meta.GetNamespace())
			}
		}
	}
	return m
}

func TestKubernetesManifests(t *testing.T) {
	m := loadManifests(t)
	if len(m.daemonSets) != 1 {
		t.Fatalf("%d DaemonSets, want 1", len(m.daemonSets))
	}
	ds := m.daemonSets[0]
	pod := ds.Spec.Template
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
		t.Fatalf("DaemonSet selector %v does not match its pods' labels %v (%v)", ds.Spec.Selector, pod.Labels, err)
	}
	spec := pod.Spec
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("the pod shares a host namespace (network %v, pid %v, ipc %v): sandboxd needs none", spec.HostNetwork, spec.HostPID, spec.HostIPC)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("the pod mounts a service-account token: sandboxd calls no Kubernetes API")
	}
	if m.accounts[spec.ServiceAccountName] == nil {
		t.Errorf("service account %q is not in the manifests", spec.ServiceAccountName)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Privileged == nil || !*sc.Privileged || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("container security context %+v: want privileged (cgroups, mounts, namespaces) with a read-only root", sc)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	probe := func(name string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || ports[p.HTTPGet.Port.String()] == 0 {
			t.Errorf("%s probe %+v: want an HTTP GET of %s on a declared port", name, p, path)
		}
	}
	probe("readiness", c.ReadinessProbe, "/readyz")
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("startup", c.StartupProbe, "/healthz")
	if a := pod.Annotations; a["prometheus.io/scrape"] != "true" || a["prometheus.io/path"] != "/metrics" || a["prometheus.io/port"] != fmt.Sprint(ports["http"]) {
		t.Errorf("Prometheus annotations %v: want scrape of /metrics on the http port %d", a, ports["http"])
	}

	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	mounts := map[string]string{} // mount path -> volume
	for _, vm := range c.VolumeMounts {
		if _, ok := volumes[vm.Name]; !ok {
			t.Errorf("volume mount %s names no volume", vm.Name)
		}
		mounts[vm.MountPath] = vm.Name
	}

	// The config the pods load is one the daemon accepts, and fits the pod around it.
	cfgVol := volumes[mounts["/etc/sandboxd/config.toml"]]
	if cfgVol.ConfigMap == nil || m.configMaps[cfgVol.ConfigMap.Name] == nil {
		t.Fatalf("/etc/sandboxd/config.toml is not mounted from a ConfigMap in the manifests")
	}
	if !strings.Contains(strings.Join(c.Args, " "), "--config /etc/sandboxd/config.toml") {
		t.Errorf("args %v do not load /etc/sandboxd/config.toml", c.Args)
	}
	toml := m.configMaps[cfgVol.ConfigMap.Name].Data["config.toml"]
	path := filepath.Join(t.TempDir(), "config.toml")
	os.WriteFile(path, []byte(toml), 0o644)
	cfg := daemon.Default()
	if err := cfg.LoadFile(path); err != nil {
		t.Fatalf("the ConfigMap's config.toml: %v", err)
	}
	// Validate opens the files it names, which only the image and the Secret have:
	// check where they are, then validate against stand-ins.
	if cfg.Rootfs != "/usr/local/share/sandboxd/rootfs.tar.zst" || cfg.ImagesDir != "/usr/local/share/sandboxd/images" {
		t.Errorf("rootfs %s and images_dir %s are not where deploy/k8s/Containerfile puts them", cfg.Rootfs, cfg.ImagesDir)
	}
	apiToken, adminToken := cfg.APITokenFile, cfg.AdminTokenFile
	stand := t.TempDir()
	for _, f := range []*string{&cfg.Rootfs, &cfg.APITokenFile, &cfg.AdminTokenFile} {
		p := filepath.Join(stand, filepath.Base(*f))
		os.WriteFile(p, []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
		*f = p
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the ConfigMap's config.toml: %v", err)
	}
	cfg.APITokenFile, cfg.AdminTokenFile = apiToken, adminToken
	listensHTTP := false
	for _, addr := range cfg.ListenAddrs() {
		listensHTTP = listensHTTP || strings.HasSuffix(addr, fmt.Sprintf(":%d", ports["http"]))
	}
	if !listensHTTP {
		t.Errorf("the daemon listens on %v, not on the http port %d the probes and Services use", cfg.ListenAddrs(), ports["http"])
	}
	for key, dir := range map[string]string{"state_dir": cfg.StateDir, "run_dir": cfg.RunDir} {
		v, ok := volumes[mounts[dir]]
		if !ok {
			t.Errorf("%s %s is not a volume: it would be on the read-only root", key, dir)
			continue
		}
		if key == "state_dir" && (v.HostPath == nil || v.HostPath.Path != dir) {
			t.Errorf("state_dir %s is not on the node (hostPath): unpacked images would not survive a restart", dir)
		}
		if key == "run_dir" && (v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory) {
			t.Errorf("run_dir %s is not a tmpfs (emptyDir medium Memory)", dir)
		}
	}
	tokens := filepath.Dir(cfg.APITokenFile)
	if v := volumes[mounts[tokens]]; v.Secret == nil || filepath.Dir(cfg.AdminTokenFile) != tokens {
		t.Errorf("token files %s and %s are not mounted from a Secret", cfg.APITokenFile, cfg.AdminTokenFile)
	}
	if grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second; grace <= time.Duration(cfg.ShutdownGrace) {
		t.Errorf("terminationGracePeriodSeconds %s is not longer than shutdown_grace %s: kubelet would kill running jobs' results", grace, time.Duration(cfg.ShutdownGrace))
	}

	// Services select the DaemonSet's pods and reach the port the daemon serves.
	if len(m.services) == 0 {
		t.Fatal("no Service")
	}
	for _, s := range m.services {
		if s.Spec.Selector["app.kubernetes.io/name"] == "nats" {
			continue
		}
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(pod.Labels)) {
			t.Errorf("Service %s selects %v, not the sandboxd pods", s.Name, s.Spec.Selector)
		}
		for _, p := range s.Spec.Ports {
			if ports[p.TargetPort.String()] == 0 && p.TargetPort.IntVal != ports["http"] {
				t.Errorf("Service %s port %d targets %s, which the pod does not declare", s.Name, p.Port, p.TargetPort.String())
			}
		}
	}

	// NATS for the shared queue: its Service selects its StatefulSet's pods.
	var nats *appsv1.StatefulSet
	for _, s := range m.statefulSets {
		if s.Name == "nats" {
			nats = s
		}
	}
	if nats == nil {
		t.Fatal("no NATS StatefulSet")
	}
	natsConf := ""
	for _, v := range nats.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil && m.configMaps[v.ConfigMap.Name] != nil {
			natsConf = m.configMaps[v.ConfigMap.Name].Data["nats.conf"]
		}
	}
	if !strings.Contains(natsConf, "jetstream") || !strings.Contains(natsConf, "max_payload: 8MB") {
		t.Errorf("NATS's config (from a ConfigMap) lacks JetStream or an 8MB max_payload:\n%s", natsConf)
	}
	// Debian's nats-server (installed for the cluster tests) checks the file itself.
	if bin, err := exec.LookPath("nats-server"); err == nil {
		conf := filepath.Join(t.TempDir(), "nats.conf")
		os.WriteFile(conf, []byte(strings.ReplaceAll(natsConf, "/data", t.TempDir())), 0o644)
		if out, err := exec.Command(bin, "-c", conf, "-t").CombinedOutput(); err != nil {
			t.Errorf("nats-server -t on the ConfigMap's nats.conf: %v\n%s", err, out)
		}
	}
	if args := strings.Join(nats.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "/etc/nats/nats.conf") {
		t.Errorf("NATS does not load its config: %s", args)
	}
	if cfg.MaxBody > 8<<20 || 2*cfg.OutputLimit > 8<<20 {
		t.Errorf("max_body %d or twice output_limit %d exceeds NATS's max_payload 8MB", cfg.MaxBody, 2*cfg.OutputLimit)
	}
	if u, err := url.Parse(cfg.Cluster.NATSURL); err != nil || u.Hostname() != "nats.sandboxd.svc" || u.Port() != "4222" {
		t.Errorf("cluster.nats_url %q is not the nats Service's client port (nats.sandboxd.svc:4222)", cfg.Cluster.NATSURL)
	}
	natsServed := false
	for _, s := range m.services {
		natsServed = natsServed || (s.Name == "nats" && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(nats.Spec.Template.Labels)))
	}
	if !natsServed {
		t.Errorf("no Service named nats selects the NATS pods")
	}
}
