package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The subset of the Kubernetes objects the checks read.
type (
	meta struct {
		Name        string            `yaml:"name"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	}
	object struct {
		APIVersion string    `yaml:"apiVersion"`
		Kind       string    `yaml:"kind"`
		Metadata   meta      `yaml:"metadata"`
		node       yaml.Node // the whole document, to decode into a kind's type
	}
	labelSelector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	workload struct { // Deployment, StatefulSet
		Metadata meta `yaml:"metadata"`
		Spec     struct {
			Replicas *int          `yaml:"replicas"`
			Selector labelSelector `yaml:"selector"`
			Template struct {
				Metadata meta    `yaml:"metadata"`
				Spec     podSpec `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	podSpec struct {
		TerminationGracePeriodSeconds *int64             `yaml:"terminationGracePeriodSeconds"`
		SecurityContext               securityContext    `yaml:"securityContext"`
		TopologySpreadConstraints     []spreadConstraint `yaml:"topologySpreadConstraints"`
		Containers                    []container        `yaml:"containers"`
		InitContainers                []container        `yaml:"initContainers"`
		Volumes                       []volume           `yaml:"volumes"`
	}
	spreadConstraint struct {
		MaxSkew           int           `yaml:"maxSkew"`
		TopologyKey       string        `yaml:"topologyKey"`
		WhenUnsatisfiable string        `yaml:"whenUnsatisfiable"`
		LabelSelector     labelSelector `yaml:"labelSelector"`
	}
	securityContext struct {
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
		SeccompProfile *struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	}
	container struct {
		Name    string   `yaml:"name"`
		Command []string `yaml:"command"`
		Args    []string `yaml:"args"`
		Env     []envVar `yaml:"env"`
		EnvFrom []struct {
			ConfigMapRef *struct {
				Name string `yaml:"name"`
			} `yaml:"configMapRef"`
		} `yaml:"envFrom"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		ReadinessProbe *probe `yaml:"readinessProbe"`
		LivenessProbe  *probe `yaml:"livenessProbe"`
		StartupProbe   *probe `yaml:"startupProbe"`
		Lifecycle      *struct {
			PreStop *struct {
				Sleep *struct {
					Seconds int64 `yaml:"seconds"`
				} `yaml:"sleep"`
			} `yaml:"preStop"`
		} `yaml:"lifecycle"`
		Resources struct {
			Requests map[string]string `yaml:"requests"`
			Limits   map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		SecurityContext securityContext `yaml:"securityContext"`
		VolumeMounts    []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			SubPath   string `yaml:"subPath"`
		} `yaml:"volumeMounts"`
	}
	envVar struct {
		Name      string     `yaml:"name"`
		Value     *string    `yaml:"value"`
		ValueFrom *yaml.Node `yaml:"valueFrom"`
	}
	probe struct {
		HTTPGet *struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"` // a number or a port name
		} `yaml:"httpGet"`
		GRPC *struct {
			Port int `yaml:"port"`
		} `yaml:"grpc"`
		TCPSocket *struct {
			Port string `yaml:"port"`
		} `yaml:"tcpSocket"`
		Exec *struct {
			Command []string `yaml:"command"`
		} `yaml:"exec"`
	}
	keyPath struct {
		Key  string `yaml:"key"`
		Path string `yaml:"path"`
	}
	volume struct {
		Name   string `yaml:"name"`
		Secret *struct {
			SecretName string    `yaml:"secretName"`
			Items      []keyPath `yaml:"items"`
		} `yaml:"secret"`
		ConfigMap *struct {
			Name  string    `yaml:"name"`
			Items []keyPath `yaml:"items"`
		} `yaml:"configMap"`
	}
	podDisruptionBudget struct {
		Spec struct {
			MinAvailable   *string       `yaml:"minAvailable"`
			MaxUnavailable *string       `yaml:"maxUnavailable"`
			Selector       labelSelector `yaml:"selector"`
		} `yaml:"spec"`
	}
	networkPolicy struct {
		Spec struct {
			PodSelector labelSelector `yaml:"podSelector"`
			PolicyTypes []string      `yaml:"policyTypes"`
			Ingress     []struct {
				From []struct {
					PodSelector       *labelSelector `yaml:"podSelector"`
					NamespaceSelector *labelSelector `yaml:"namespaceSelector"`
					IPBlock           *yaml.Node     `yaml:"ipBlock"`
				} `yaml:"from"`
				Ports []struct {
					Port string `yaml:"port"` // a number or a port name
				} `yaml:"ports"`
			} `yaml:"ingress"`
		} `yaml:"spec"`
	}
	service struct {
		Spec struct {
			Selector map[string]string `yaml:"selector"`
			Ports    []struct {
				Name        string `yaml:"name"`
				Port        int    `yaml:"port"`
				TargetPort  string `yaml:"targetPort"` // a number or a port name
				AppProtocol string `yaml:"appProtocol"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	configMap struct {
		Data map[string]string `yaml:"data"`
	}
	secret struct {
		Data       map[string]string `yaml:"data"`
		StringData map[string]string `yaml:"stringData"`
	}
)

// rendered is one kustomize build's output.
type rendered struct {
	objects []object
}

// parseRendered decodes a multi-document YAML stream.
func parseRendered(data []byte) (*rendered, error) {
	r := &rendered{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("decode YAML: %w", err)
		}
		var o object
		if err := node.Decode(&o); err != nil {
			return nil, fmt.Errorf("decode object: %w", err)
		}
		o.node = node
		r.objects = append(r.objects, o)
	}
	if len(r.objects) == 0 {
		return nil, errors.New("no objects")
	}
	return r, nil
}

// all returns the objects of kind.
func (r *rendered) all(kind string) []object {
	var out []object
	for _, o := range r.objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// find returns the object of kind and name, or nil.
func (r *rendered) find(kind, name string) *object {
	for i := range r.objects {
		if r.objects[i].Kind == kind && r.objects[i].Metadata.Name == name {
			return &r.objects[i]
		}
	}
	return nil
}

// broker returns the broker's Deployment and its container.
func (r *rendered) broker() (*workload, *container, error) {
	o := r.find("Deployment", brokerName)
	if o == nil {
		return nil, nil, errors.New("no Deployment " + brokerName)
	}
	var w workload
	if err := o.node.Decode(&w); err != nil {
		return nil, nil, fmt.Errorf("decode Deployment: %w", err)
	}
	for i := range w.Spec.Template.Spec.Containers {
		if c := &w.Spec.Template.Spec.Containers[i]; c.Name == brokerName {
			return &w, c, nil
		}
	}
	return nil, nil, errors.New("the Deployment has no container " + brokerName)
}

// replicasOf returns a workload's replicas for a message.
func replicasOf(w *workload) string {
	if w.Spec.Replicas == nil {
		return "unset (1)"
	}
	return strconv.Itoa(*w.Spec.Replicas)
}

// workloads returns every Deployment and StatefulSet.
func (r *rendered) workloads() ([]workload, error) {
	var out []workload
	for _, o := range r.objects {
		if o.Kind != "Deployment" && o.Kind != "StatefulSet" {
			continue
		}
		var w workload
		if err := o.node.Decode(&w); err != nil {
			return nil, fmt.Errorf("decode %s %s: %w", o.Kind, o.Metadata.Name, err)
		}
		out = append(out, w)
	}
	return out, nil
}

// setting returns the value the broker container gets for a flag: its
// --flag argument, else its SECRETBROKER_* environment variable (a literal,
// or from an envFrom ConfigMap in the render), else "" and false.
func (r *rendered) setting(c *container, flag string) (string, bool) {
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--"+flag+"="); ok {
			return v, true
		}
	}
	env := "SECRETBROKER_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
	return r.env(c, env)
}

// env returns an environment variable's literal value in c, from env or
// from an envFrom ConfigMap in the render (env wins, as in Kubernetes).
func (r *rendered) env(c *container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name && e.Value != nil {
			return *e.Value, true
		}
	}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			continue
		}
		if o := r.find("ConfigMap", ef.ConfigMapRef.Name); o != nil {
			var cm configMap
			if err := o.node.Decode(&cm); err == nil {
				if v, ok := cm.Data[name]; ok {
					return v, true
				}
			}
		}
	}
	return "", false
}

// portNumber resolves a probe's or a policy's port (a number or a name of
// one of c's ports).
func portNumber(c *container, port string) (int, error) {
	if n, err := strconv.Atoi(port); err == nil {
		return n, nil
	}
	for _, p := range c.Ports {
		if p.Name == port {
			return p.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("no container port named %q", port)
}

// matches reports whether a selector selects labels (an empty selector
// selects nothing here: the checks never rely on one).
func matches(sel labelSelector, labels map[string]string) bool {
	if len(sel.MatchLabels) == 0 {
		return false
	}
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// check is one invariant on a render; production says it holds for the
// production overlays only (the base runs one replica without Redis).
type check struct {
	name       string
	production bool
	run        func(r *rendered, d brokerDefaults) error
}

var checks = []check{
	{"replicas", true, checkReplicas},
	{"topology spread", false, checkSpread},
	{"probes", false, checkProbes},
	{"pod hardening", false, checkHardening},
	{"resources", false, checkResources},
	{"PodDisruptionBudget", true, checkPDB},
	{"NetworkPolicy", false, checkNetworkPolicy},
	{"Services", false, checkServices},
	{"grace period", false, checkGrace},
	{"GOMEMLIMIT", false, checkGoMemLimit},
	{"mounted files", false, checkMountedFiles},
	{"no secret in a literal", false, checkNoLiteralSecrets},
	{"Prometheus scrape", false, checkPrometheus},
	{"Redis", true, checkRedis},
}

// checkReplicas: at least two replicas, and --expected-replicas equal to
// them (it divides the shared budget while Redis is unreachable).
func checkReplicas(r *rendered, _ brokerDefaults) error {
	w, c, err := r.broker()
	if err != nil {
		return err
	}
	if w.Spec.Replicas == nil || *w.Spec.Replicas < 2 {
		return fmt.Errorf("replicas = %s, want at least 2", replicasOf(w))
	}
	v, ok := r.setting(c, "expected-replicas")
	if !ok {
		return errors.New("--expected-replicas is not set")
	}
	if v != strconv.Itoa(*w.Spec.Replicas) {
		return fmt.Errorf("--expected-replicas = %s, but the Deployment runs %d replicas", v, *w.Spec.Replicas)
	}
	return nil
}

// checkSpread: a hard spread over nodes selecting the broker's own pods,
// no topology key twice.
func checkSpread(r *rendered, _ brokerDefaults) error {
	w, _, err := r.broker()
	if err != nil {
		return err
	}
	pod := w.Spec.Template
	seen := map[string]bool{}
	hostname := false
	for _, sc := range pod.Spec.TopologySpreadConstraints {
		if seen[sc.TopologyKey] {
			return fmt.Errorf("topology key %s is constrained twice", sc.TopologyKey)
		}
		seen[sc.TopologyKey] = true
		if !matches(sc.LabelSelector, pod.Metadata.Labels) {
			return fmt.Errorf("the %s constraint's selector does not select the broker's pods", sc.TopologyKey)
		}
		if sc.MaxSkew < 1 {
			return fmt.Errorf("the %s constraint's maxSkew is %d", sc.TopologyKey, sc.MaxSkew)
		}
		if sc.TopologyKey == "kubernetes.io/hostname" && sc.WhenUnsatisfiable == "DoNotSchedule" {
			hostname = true
		}
	}
	if !hostname {
		return errors.New("no DoNotSchedule spread over kubernetes.io/hostname")
	}
	return nil
}

// checkProbes: readiness on /readyz and liveness on /healthz of the
// admin listener; a native gRPC probe only on a gRPC listener without TLS
// (the kubelet's gRPC probe speaks plaintext and has no client
// certificate).
func checkProbes(r *rendered, d brokerDefaults) error {
	_, c, err := r.broker()
	if err != nil {
		return err
	}
	if addr, ok := r.setting(c, "admin-addr"); ok && !strings.HasSuffix(addr, ":"+strconv.Itoa(d.adminPort)) {
		return fmt.Errorf("--admin-addr = %s; the checks expect port %d", addr, d.adminPort)
	}
	want := map[string]struct {
		p    *probe
		path string
	}{
		"readiness": {c.ReadinessProbe, "/readyz"},
		"liveness":  {c.LivenessProbe, "/healthz"},
	}
	for _, kind := range []string{"readiness", "liveness"} {
		w := want[kind]
		if w.p == nil || w.p.HTTPGet == nil {
			return fmt.Errorf("no %s HTTP probe", kind)
		}
		if w.p.HTTPGet.Path != w.path {
			return fmt.Errorf("%s probe path %s, want %s", kind, w.p.HTTPGet.Path, w.path)
		}
		port, err := portNumber(c, w.p.HTTPGet.Port)
		if err != nil {
			return fmt.Errorf("%s probe: %w", kind, err)
		}
		if port != d.adminPort {
			return fmt.Errorf("%s probe on port %d, want the admin port %d", kind, port, d.adminPort)
		}
	}
	_, tls := r.setting(c, "tls-cert-file")
	for _, p := range []*probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
		if p == nil || p.GRPC == nil {
			continue
		}
		if tls {
			return fmt.Errorf("a native gRPC probe on port %d, but the gRPC listener serves TLS with client certificates, which the kubelet's probe cannot do", p.GRPC.Port)
		}
		if p.GRPC.Port != d.grpcPort {
			return fmt.Errorf("a native gRPC probe on port %d, want the gRPC port %d", p.GRPC.Port, d.grpcPort)
		}
	}
	return nil
}

// checkHardening: every workload's containers run non-root, read-only,
// with no capabilities, no privilege escalation and the runtime's seccomp
// profile.
func checkHardening(r *rendered, _ brokerDefaults) error {
	ws, err := r.workloads()
	if err != nil {
		return err
	}
	for _, w := range ws {
		pod := w.Spec.Template.Spec
		for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
			where := w.Metadata.Name + "/" + c.Name
			sc := c.SecurityContext
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				return fmt.Errorf("%s: readOnlyRootFilesystem is not true", where)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				return fmt.Errorf("%s: allowPrivilegeEscalation is not false", where)
			}
			if !slices.Contains(sc.Capabilities.Drop, "ALL") {
				return fmt.Errorf("%s: capabilities do not drop ALL", where)
			}
			nonRoot := pod.SecurityContext.RunAsNonRoot
			if sc.RunAsNonRoot != nil {
				nonRoot = sc.RunAsNonRoot
			}
			if nonRoot == nil || !*nonRoot {
				return fmt.Errorf("%s: runAsNonRoot is not true", where)
			}
			seccomp := pod.SecurityContext.SeccompProfile
			if sc.SeccompProfile != nil {
				seccomp = sc.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != "RuntimeDefault" {
				return fmt.Errorf("%s: seccomp profile is not RuntimeDefault", where)
			}
		}
	}
	return nil
}

// checkResources: every container requests and limits CPU and memory,
// each request at most its limit.
func checkResources(r *rendered, _ brokerDefaults) error {
	ws, err := r.workloads()
	if err != nil {
		return err
	}
	for _, w := range ws {
		for _, c := range w.Spec.Template.Spec.Containers {
			for _, res := range []string{"cpu", "memory"} {
				req, ok1 := c.Resources.Requests[res]
				lim, ok2 := c.Resources.Limits[res]
				if !ok1 || !ok2 {
					return fmt.Errorf("%s/%s: %s request or limit missing", w.Metadata.Name, c.Name, res)
				}
				rq, err := parseQuantity(req)
				if err != nil {
					return fmt.Errorf("%s/%s: %w", w.Metadata.Name, c.Name, err)
				}
				lq, err := parseQuantity(lim)
				if err != nil {
					return fmt.Errorf("%s/%s: %w", w.Metadata.Name, c.Name, err)
				}
				if rq.Cmp(lq) > 0 {
					return fmt.Errorf("%s/%s: %s request %s above its limit %s", w.Metadata.Name, c.Name, res, req, lim)
				}
			}
		}
	}
	return nil
}

// checkPDB: a PodDisruptionBudget selecting the broker's pods that lets a
// drain evict one of them.
func checkPDB(r *rendered, _ brokerDefaults) error {
	w, _, err := r.broker()
	if err != nil {
		return err
	}
	found := false
	for _, o := range r.all("PodDisruptionBudget") {
		var pdb podDisruptionBudget
		if err := o.node.Decode(&pdb); err != nil {
			return fmt.Errorf("decode PodDisruptionBudget: %w", err)
		}
		if !matches(pdb.Spec.Selector, w.Spec.Template.Metadata.Labels) {
			continue
		}
		found = true
		switch {
		case pdb.Spec.MinAvailable != nil:
			n, err := strconv.Atoi(*pdb.Spec.MinAvailable)
			if err != nil {
				return fmt.Errorf("PodDisruptionBudget %s: minAvailable %q: want a number", o.Metadata.Name, *pdb.Spec.MinAvailable)
			}
			if n < 1 || w.Spec.Replicas == nil || n >= *w.Spec.Replicas {
				return fmt.Errorf("PodDisruptionBudget %s: minAvailable %d with %s replicas: want 1 to replicas-1", o.Metadata.Name, n, replicasOf(w))
			}
		case pdb.Spec.MaxUnavailable != nil:
			n, err := strconv.Atoi(*pdb.Spec.MaxUnavailable)
			if err != nil || n < 1 {
				return fmt.Errorf("PodDisruptionBudget %s: maxUnavailable %q: want a number of at least 1", o.Metadata.Name, *pdb.Spec.MaxUnavailable)
			}
		default:
			return fmt.Errorf("PodDisruptionBudget %s: neither minAvailable nor maxUnavailable", o.Metadata.Name)
		}
	}
	if !found {
		return errors.New("no PodDisruptionBudget selects the broker's pods")
	}
	return nil
}

// checkNetworkPolicy: a policy selecting the broker's pods admits the
// gRPC and gateway ports only from pods labelled as callers, and the
// admin port only from the monitoring namespace; no rule admits anyone.
func checkNetworkPolicy(r *rendered, d brokerDefaults) error {
	w, c, err := r.broker()
	if err != nil {
		return err
	}
	admitted := map[int]bool{} // port: some rule admits it
	found := false
	for _, o := range r.all("NetworkPolicy") {
		var np networkPolicy
		if err := o.node.Decode(&np); err != nil {
			return fmt.Errorf("decode NetworkPolicy: %w", err)
		}
		if !matches(np.Spec.PodSelector, w.Spec.Template.Metadata.Labels) {
			continue
		}
		found = true
		if !slices.Contains(np.Spec.PolicyTypes, "Ingress") {
			return fmt.Errorf("NetworkPolicy %s: policyTypes lacks Ingress", o.Metadata.Name)
		}
		for i, rule := range np.Spec.Ingress {
			if len(rule.From) == 0 {
				return fmt.Errorf("NetworkPolicy %s: ingress rule %d admits every source", o.Metadata.Name, i)
			}
			if len(rule.Ports) == 0 {
				return fmt.Errorf("NetworkPolicy %s: ingress rule %d admits every port", o.Metadata.Name, i)
			}
			for _, p := range rule.Ports {
				port, err := portNumber(c, p.Port)
				if err != nil {
					return fmt.Errorf("NetworkPolicy %s: %w", o.Metadata.Name, err)
				}
				for _, peer := range rule.From {
					var ok bool
					switch port {
					case d.grpcPort, d.gatewayPort:
						ok = peer.PodSelector != nil && peer.PodSelector.MatchLabels[callerLabel] == "true" && peer.IPBlock == nil
					case d.adminPort:
						ok = peer.PodSelector == nil && peer.IPBlock == nil && peer.NamespaceSelector != nil &&
							peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == monitoringNamespace
					}
					if !ok {
						return fmt.Errorf("NetworkPolicy %s: ingress rule %d admits port %d from a source other than the one meant for it", o.Metadata.Name, i, port)
					}
				}
				admitted[port] = true
			}
		}
	}
	if !found {
		return errors.New("no NetworkPolicy selects the broker's pods")
	}
	for _, p := range []int{d.grpcPort, d.gatewayPort, d.adminPort} {
		if !admitted[p] {
			return fmt.Errorf("no NetworkPolicy rule admits port %d", p)
		}
	}
	return nil
}

// checkServices: Services selecting the broker's pods expose the gRPC and
// the gateway port, and none exposes the admin port. When the broker
// serves TLS, each exposed port says so in its appProtocol (tls, or https
// for the gateway): a mesh reads appProtocol grpc, http2 or http, and
// without one a port named grpc or http, as cleartext it may parse.
func checkServices(r *rendered, d brokerDefaults) error {
	w, c, err := r.broker()
	if err != nil {
		return err
	}
	_, servesTLS := r.setting(c, "tls-cert-file")
	for _, p := range []struct {
		flag string
		port int
	}{{"grpc-addr", d.grpcPort}, {"http-addr", d.gatewayPort}} {
		if addr, ok := r.setting(c, p.flag); ok && !strings.HasSuffix(addr, ":"+strconv.Itoa(p.port)) {
			return fmt.Errorf("--%s = %s; the checks expect port %d", p.flag, addr, p.port)
		}
	}
	exposed := map[int]bool{}
	for _, o := range r.all("Service") {
		var svc service
		if err := o.node.Decode(&svc); err != nil {
			return fmt.Errorf("decode Service: %w", err)
		}
		if !matches(labelSelector{MatchLabels: svc.Spec.Selector}, w.Spec.Template.Metadata.Labels) {
			continue
		}
		for _, p := range svc.Spec.Ports {
			target := p.TargetPort
			if target == "" {
				target = strconv.Itoa(p.Port)
			}
			n, err := portNumber(c, target)
			if err != nil {
				return fmt.Errorf("Service %s: %w", o.Metadata.Name, err)
			}
			if n == d.adminPort {
				return fmt.Errorf("Service %s exposes the admin port", o.Metadata.Name)
			}
			if servesTLS && p.AppProtocol != "tls" && p.AppProtocol != "https" {
				return fmt.Errorf("Service %s port %s: appProtocol %q, but the broker serves TLS there: set tls (or https for the gateway)",
					o.Metadata.Name, p.Name, p.AppProtocol)
			}
			exposed[n] = true
		}
	}
	for _, p := range []int{d.grpcPort, d.gatewayPort} {
		if !exposed[p] {
			return fmt.Errorf("no Service exposes port %d", p)
		}
	}
	return nil
}

// checkGrace: the grace period covers the preStop sleep, the drain
// (--shutdown-timeout) and the telemetry flush, with room to spare.
func checkGrace(r *rendered, d brokerDefaults) error {
	w, c, err := r.broker()
	if err != nil {
		return err
	}
	shutdown := d.shutdownTimeout
	if v, ok := r.setting(c, "shutdown-timeout"); ok {
		if shutdown, err = time.ParseDuration(v); err != nil {
			return fmt.Errorf("--shutdown-timeout: %w", err)
		}
	}
	var preStop time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	g := w.Spec.Template.Spec.TerminationGracePeriodSeconds
	if g == nil {
		return errors.New("terminationGracePeriodSeconds is not set (the default, 30 s, is not derived from the drain)")
	}
	grace := time.Duration(*g) * time.Second
	if need := preStop + shutdown + telemetryFlush; grace <= need {
		return fmt.Errorf("terminationGracePeriodSeconds %v, not above preStop %v + shutdown %v + telemetry flush %v = %v",
			grace, preStop, shutdown, telemetryFlush, need)
	}
	return nil
}

// checkGoMemLimit: GOMEMLIMIT is a literal below the container's memory
// limit and at least half of it.
func checkGoMemLimit(r *rendered, _ brokerDefaults) error {
	_, c, err := r.broker()
	if err != nil {
		return err
	}
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" && e.ValueFrom != nil {
			return errors.New("GOMEMLIMIT comes from valueFrom (resourceFieldRef gives 100% of the limit); set a literal below the limit")
		}
	}
	v, ok := r.env(c, "GOMEMLIMIT")
	if !ok {
		return errors.New("GOMEMLIMIT is not set")
	}
	soft, err := parseGoMemLimit(v)
	if err != nil {
		return err
	}
	lim, ok := c.Resources.Limits["memory"]
	if !ok {
		return errors.New("no memory limit")
	}
	hard, err := parseQuantity(lim)
	if err != nil {
		return err
	}
	if soft.Cmp(hard) >= 0 {
		return fmt.Errorf("GOMEMLIMIT %s is not below the memory limit %s", v, lim)
	}
	if half := new(big.Rat).Quo(hard, big.NewRat(2, 1)); soft.Cmp(half) < 0 {
		return fmt.Errorf("GOMEMLIMIT %s is under half the memory limit %s: the collector would run far too often", v, lim)
	}
	return nil
}

// fileFlag matches the settings that name a file the broker reads.
var fileFlag = regexp.MustCompile(`^SECRETBROKER_[A-Z0-9_]+_FILE$`)

// sensitiveFile matches the file settings (as environment variable
// names) whose content must come from a Secret, never a ConfigMap.
var sensitiveFile = regexp.MustCompile(`(^|_)(KEY|TOKEN|URL|CALLERS|PASSWORD|CERT|CA)(_|$)`)

// checkMountedFiles: every file a setting names is in a directory mounted
// whole (no subPath, so updates reach the pod) from a Secret or ConfigMap
// holding that file; secret material only from a Secret.
func checkMountedFiles(r *rendered, _ brokerDefaults) error {
	w, c, err := r.broker()
	if err != nil {
		return err
	}
	files := map[string]string{} // setting: path
	for _, e := range c.Env {
		if fileFlag.MatchString(e.Name) && e.Value != nil {
			files[e.Name] = *e.Value
		}
	}
	for _, a := range c.Args {
		if name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "="); ok && strings.HasSuffix(name, "-file") {
			files["SECRETBROKER_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_"))] = value
		}
	}
	if len(files) == 0 {
		return errors.New("no file settings at all")
	}
	volumes := map[string]volume{}
	for _, v := range w.Spec.Template.Spec.Volumes {
		volumes[v.Name] = v
	}
	for setting, file := range files {
		dir, base := path.Split(file)
		dir = strings.TrimSuffix(dir, "/")
		mounted := false
		for _, m := range c.VolumeMounts {
			if m.MountPath != dir {
				continue
			}
			if m.SubPath != "" {
				return fmt.Errorf("%s: %s is mounted with subPath, so updates never reach the pod", setting, dir)
			}
			v, ok := volumes[m.Name]
			if !ok {
				return fmt.Errorf("%s: mount %s names no volume", setting, m.Name)
			}
			var items []keyPath
			switch {
			case v.Secret != nil:
				items = v.Secret.Items
			case v.ConfigMap != nil:
				if sensitiveFile.MatchString(setting) {
					return fmt.Errorf("%s: %s comes from a ConfigMap; it belongs in a Secret", setting, file)
				}
				items = v.ConfigMap.Items
			default:
				return fmt.Errorf("%s: volume %s is neither a Secret nor a ConfigMap", setting, m.Name)
			}
			if len(items) > 0 && !slices.ContainsFunc(items, func(it keyPath) bool { return it.Path == base }) {
				return fmt.Errorf("%s: volume %s does not hold %s", setting, m.Name, base)
			}
			mounted = true
		}
		if !mounted {
			return fmt.Errorf("%s: nothing is mounted at %s for %s", setting, dir, file)
		}
	}
	return nil
}

// checkNoLiteralSecrets: no password, token or key is written into the
// manifests as an environment value.
func checkNoLiteralSecrets(r *rendered, _ brokerDefaults) error {
	ws, err := r.workloads()
	if err != nil {
		return err
	}
	secretish := regexp.MustCompile(`PASSWORD|TOKEN|SECRET_KEY|PRIVATE_KEY|_AUTH$`)
	for _, w := range ws {
		for _, c := range w.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				if secretish.MatchString(e.Name) && !strings.HasSuffix(e.Name, "_FILE") && e.Value != nil {
					return fmt.Errorf("%s/%s: %s is a literal; take it from a Secret", w.Metadata.Name, c.Name, e.Name)
				}
			}
		}
	}
	return nil
}

// checkPrometheus: the pods ask to be scraped on the admin port at
// /metrics.
func checkPrometheus(r *rendered, d brokerDefaults) error {
	w, _, err := r.broker()
	if err != nil {
		return err
	}
	a := w.Spec.Template.Metadata.Annotations
	want := map[string]string{
		"prometheus.io/scrape": "true",
		"prometheus.io/port":   strconv.Itoa(d.adminPort),
		"prometheus.io/path":   "/metrics",
	}
	for k, v := range want {
		if a[k] != v {
			return fmt.Errorf("pod annotation %s = %q, want %q", k, a[k], v)
		}
	}
	return nil
}

// checkRedis: several replicas share one budget, so the broker is given
// Redis: a URL from a mounted file (checkMountedFiles checks the mount),
// or a --redis-url value without a password. A URL the render carries is
// redis:// or rediss://, and names a Service of the render when it names
// a bare host. Its errors never hold the URL, which may hold a password.
func checkRedis(r *rendered, _ brokerDefaults) error {
	w, c, err := r.broker()
	if err != nil {
		return err
	}
	if raw, ok := r.setting(c, "redis-url"); ok {
		return checkRedisURL(r, raw, false)
	}
	file, ok := r.setting(c, "redis-url-file")
	if !ok {
		return errors.New("several replicas without --redis-url-file or --redis-url: each would spend the whole GitHub budget")
	}
	if _, ok := r.setting(c, "state-hmac-key-file"); !ok {
		return errors.New("the state in Redis without --state-hmac-key-file: the broker would keep its state key in Redis, beside the fingerprints and the sealed values it protects")
	}
	dir, base := path.Split(file)
	for _, m := range c.VolumeMounts {
		if m.MountPath != strings.TrimSuffix(dir, "/") {
			continue
		}
		for _, v := range w.Spec.Template.Spec.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			o := r.find("Secret", v.Secret.SecretName)
			if o == nil {
				return nil // created out of band (an external Redis)
			}
			var s secret
			if err := o.node.Decode(&s); err != nil {
				return fmt.Errorf("decode Secret: %w", err)
			}
			key := base
			for _, it := range v.Secret.Items {
				if it.Path == base {
					key = it.Key
				}
			}
			raw, ok := s.StringData[key]
			if !ok {
				enc, ok := s.Data[key]
				if !ok {
					return fmt.Errorf("Secret %s has no key %s", o.Metadata.Name, key)
				}
				if raw, err = decodeBase64(enc); err != nil {
					return fmt.Errorf("Secret %s, key %s: %w", o.Metadata.Name, key, err)
				}
			}
			return checkRedisURL(r, strings.TrimSpace(raw), true)
		}
	}
	return nil
}

// checkRedisURL checks a Redis URL from the render; passwordAllowed says
// whether it may hold a password (read from a file, not a flag value).
func checkRedisURL(r *rendered, raw string, passwordAllowed bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("the Redis URL does not parse") // url.Error would quote it
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return errors.New("the Redis URL's scheme is not redis or rediss")
	}
	if _, has := u.User.Password(); has && !passwordAllowed {
		return errors.New("--redis-url holds a password, which would show in the pod spec; use REDIS_PASSWORD from a Secret or --redis-url-file")
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("the Redis URL names no host")
	}
	if !strings.Contains(host, ".") && r.find("Service", host) == nil {
		return fmt.Errorf("the Redis URL names Service %s, which is not in the render", host)
	}
	return nil
}
