package deploy

import (
	"bytes"
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// Figures of the broker these manifests must agree with.
const (
	// telemetryFlush bounds what the broker does after draining: the
	// tracer provider's flush and the meter provider's shutdown, 5 s each,
	// one after the other (cmd/secretbroker/server.go, run).
	telemetryFlush = 10 * time.Second
	// brokerName names the broker's Deployment and container.
	brokerName = "secretbroker"
	// callerLabel is the label the NetworkPolicy admits callers by.
	callerLabel = "secretbroker.io/caller"
	// monitoringNamespace may scrape the admin listener.
	monitoringNamespace = "monitoring"
)

// brokerDefaults are the broker's listen ports and drain deadline, read
// from cmd/secretbroker/config.go so that the manifests cannot drift from
// the code.
type brokerDefaults struct {
	grpcPort, gatewayPort, adminPort int
	shutdownTimeout                  time.Duration
}

// readBrokerDefaults parses the default* constants of
// cmd/secretbroker/config.go.
func readBrokerDefaults(t *testing.T) brokerDefaults {
	t.Helper()
	file := filepath.Join("..", "cmd", "secretbroker", "config.go")
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	values := map[string]ast.Expr{}
	ast.Inspect(f, func(n ast.Node) bool {
		if spec, ok := n.(*ast.ValueSpec); ok {
			for i, name := range spec.Names {
				if i < len(spec.Values) {
					values[name.Name] = spec.Values[i]
				}
			}
		}
		return true
	})
	port := func(name string) int {
		lit, ok := values[name].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			t.Fatalf("%s: %s is not a string literal", file, name)
		}
		addr, err := strconv.Unquote(lit.Value)
		if err != nil {
			t.Fatalf("%s: %s: %v", file, name, err)
		}
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("%s: %s = %q: %v", file, name, addr, err)
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			t.Fatalf("%s: %s = %q: %v", file, name, addr, err)
		}
		return n
	}
	d := brokerDefaults{
		grpcPort:    port("defaultGRPCAddr"),
		gatewayPort: port("defaultHTTPAddr"),
		adminPort:   port("defaultAdminAddr"),
	}
	// defaultShutdownTimeout = N * time.Second
	bin, ok := values["defaultShutdownTimeout"].(*ast.BinaryExpr)
	if !ok || bin.Op != token.MUL {
		t.Fatalf("%s: defaultShutdownTimeout is not N * time.Second", file)
	}
	lit, ok := bin.X.(*ast.BasicLit)
	sel, ok2 := bin.Y.(*ast.SelectorExpr)
	if !ok || !ok2 || lit.Kind != token.INT || sel.Sel.Name != "Second" {
		t.Fatalf("%s: defaultShutdownTimeout is not N * time.Second", file)
	}
	secs, err := strconv.Atoi(lit.Value)
	if err != nil {
		t.Fatalf("%s: defaultShutdownTimeout: %v", file, err)
	}
	d.shutdownTimeout = time.Duration(secs) * time.Second
	return d
}

// TestRenderedOverlays renders the base and every overlay with the pinned
// kustomize and checks the invariants on each.
func TestRenderedOverlays(t *testing.T) {
	d := readBrokerDefaults(t)
	dirs := overlayDirs(t)
	if len(dirs) == 0 {
		t.Fatal("no overlays under deploy/overlays")
	}
	dirs = append([]string{"base"}, dirs...)
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			r, err := parseRendered(build(t, dir))
			if err != nil {
				t.Fatalf("%s: %v", dir, err)
			}
			production := dir != "base"
			for _, c := range checks {
				if c.production && !production {
					continue
				}
				if err := c.run(r, d); err != nil {
					t.Errorf("%s: %s: %v", dir, c.name, err)
				}
			}
		})
	}
}

// plantedPassword is a password a broken render carries, which no
// check's error may repeat.
const plantedPassword = "planted-Redis-passw0rd"

// TestChecksCatch breaks the rendered production overlay one way at a
// time and checks that the check meant for it fails, so that no check is
// one that cannot fail.
func TestChecksCatch(t *testing.T) {
	d := readBrokerDefaults(t)
	good := string(build(t, "overlays/production-with-redis"))
	byName := map[string]check{}
	for _, c := range checks {
		byName[c.name] = c
	}
	tests := []struct {
		name, old, new, check string
	}{
		{"one replica", "\n  replicas: 2\n", "\n  replicas: 1\n", "replicas"},
		{"expected replicas differ", `SECRETBROKER_EXPECTED_REPLICAS: "2"`, `SECRETBROKER_EXPECTED_REPLICAS: "3"`, "replicas"},
		{"no spread over nodes", "topologyKey: kubernetes.io/hostname", "topologyKey: example.com/rack", "topology spread"},
		{"soft spread over nodes", "whenUnsatisfiable: DoNotSchedule", "whenUnsatisfiable: ScheduleAnyway", "topology spread"},
		{"readiness elsewhere", "path: /readyz", "path: /ready", "probes"},
		{"probes on the gRPC port", "port: admin\n", "port: grpc\n", "probes"},
		{"gRPC probe under TLS", "readinessProbe:\n          failureThreshold: 2\n          httpGet:\n            path: /readyz\n            port: admin\n",
			"readinessProbe:\n          failureThreshold: 2\n          httpGet:\n            path: /readyz\n            port: admin\n          grpc:\n            port: 9090\n", "probes"},
		{"writable root", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "pod hardening"},
		{"capabilities kept", "- ALL\n", "- NET_RAW\n", "pod hardening"},
		{"root allowed", "runAsNonRoot: true", "runAsNonRoot: false", "pod hardening"},
		{"unconfined seccomp", "type: RuntimeDefault", "type: Unconfined", "pod hardening"},
		{"request above limit", "cpu: 100m", "cpu: \"4\"", "resources"},
		{"no PDB", "kind: PodDisruptionBudget", "kind: PodDisruptionBudgetX", "PodDisruptionBudget"},
		{"PDB blocks drains", "minAvailable: 1", "minAvailable: 2", "PodDisruptionBudget"},
		{"PDB selects nothing", "  minAvailable: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: secretbroker\n",
			"  minAvailable: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: other\n", "PodDisruptionBudget"},
		{"any pod may call", "secretbroker.io/caller", "example.com/anyone", "NetworkPolicy"},
		{"no NetworkPolicy", "kind: NetworkPolicy", "kind: NetworkPolicyX", "NetworkPolicy"},
		{"admin open to callers", "kubernetes.io/metadata.name: monitoring", "kubernetes.io/metadata.name: default", "NetworkPolicy"},
		{"no gateway Service", "targetPort: gateway", "targetPort: grpc", "Services"},
		{"short grace", "terminationGracePeriodSeconds: 35", "terminationGracePeriodSeconds: 25", "grace period"},
		{"long drain", "value: 15s", "value: 40s", "grace period"},
		{"GOMEMLIMIT at the limit", "value: 460MiB", "value: 512MiB", "GOMEMLIMIT"},
		{"GOMEMLIMIT from the limit", "value: 460MiB", "valueFrom:\n            resourceFieldRef:\n              resource: limits.memory", "GOMEMLIMIT"},
		{"TLS not mounted", "mountPath: /var/run/secrets/tls", "mountPath: /var/run/tls", "mounted files"},
		{"key file missing", "path: private-key.pem", "path: key.pem", "mounted files"},
		{"a key from a ConfigMap", "      - name: audit-key\n        secret:\n          defaultMode: 288\n          items:\n          - key: hmac-key\n            path: hmac-key\n          secretName: secretbroker-audit\n",
			"      - name: audit-key\n        configMap:\n          items:\n          - key: hmac-key\n            path: hmac-key\n          name: secretbroker-audit\n", "mounted files"},
		{"a file by subPath", "        - mountPath: /var/run/secrets/callers\n", "        - mountPath: /var/run/secrets/callers\n          subPath: callers.yaml\n", "mounted files"},
		{"literal password", "- name: REDIS_PASSWORD\n          valueFrom:\n            secretKeyRef:\n              key: password\n              name: secretbroker-redis\n              optional: false\n",
			"- name: REDIS_PASSWORD\n          value: hunter2\n", "no secret in a literal"},
		{"no scrape", `prometheus.io/scrape: "true"`, `prometheus.io/scrape: "false"`, "Prometheus scrape"},
		{"scrape elsewhere", `prometheus.io/port: "9091"`, `prometheus.io/port: "9090"`, "Prometheus scrape"},
		{"no Redis", "name: SECRETBROKER_REDIS_URL_FILE", "name: SECRETBROKER_REDIS_FILE", "Redis"},
		{"state key kept in Redis", "name: SECRETBROKER_STATE_HMAC_KEY_FILE", "name: SECRETBROKER_STATE_KEY_FILE_UNSET", "Redis"},
		{"a password in --redis-url", "- name: SECRETBROKER_REDIS_URL_FILE\n          value: /var/run/secrets/redis/url\n",
			"- name: SECRETBROKER_REDIS_URL\n          value: redis://:" + plantedPassword + "@secretbroker-redis:6379/0\n", "Redis"},
		{"Redis Service missing", "kind: Service\nmetadata:\n  labels:\n    app.kubernetes.io/component: redis",
			"kind: ServiceX\nmetadata:\n  labels:\n    app.kubernetes.io/component: redis", "Redis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := byName[tt.check]
			if !ok {
				t.Fatalf("no check %q", tt.check)
			}
			if !strings.Contains(good, tt.old) {
				t.Fatalf("the render has no %q to break", tt.old)
			}
			r, err := parseRendered([]byte(strings.ReplaceAll(good, tt.old, tt.new)))
			if err != nil {
				t.Fatal(err)
			}
			err = c.run(r, d)
			if err == nil {
				t.Fatalf("check %q passed on a render with %q replaced by %q", tt.check, tt.old, tt.new)
			}
			if strings.Contains(err.Error(), plantedPassword) {
				t.Errorf("the error holds the planted password: %v", err)
			}
			t.Logf("caught: %v", err)
		})
	}
}

// TestSettingsAreFlags checks that every SECRETBROKER_* variable the
// rendered manifests set (literal or from the settings ConfigMap) is one
// of the broker's flags, as its --help lists them, so that a misspelt
// setting cannot be silently ignored.
func TestSettingsAreFlags(t *testing.T) {
	goBin := goCommand(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "run", "./cmd/secretbroker", "--help")
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("secretbroker --help: %v\n%s", err, out)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllSubmatch(out, -1) {
		flags[string(m[1])] = true
	}
	if !flags["grpc-addr"] || !flags["policy-file"] {
		t.Fatalf("secretbroker --help lists no grpc-addr or policy-file flag; its output:\n%s", out)
	}
	for _, dir := range append([]string{"base"}, overlayDirs(t)...) {
		r, err := parseRendered(build(t, dir))
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		_, c, err := r.broker()
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		names := map[string]bool{}
		for _, e := range c.Env {
			names[e.Name] = true
		}
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef == nil {
				continue
			}
			o := r.find("ConfigMap", ef.ConfigMapRef.Name)
			if o == nil {
				t.Fatalf("%s: envFrom names ConfigMap %s, which is not in the render", dir, ef.ConfigMapRef.Name)
			}
			var cm configMap
			if err := o.node.Decode(&cm); err != nil {
				t.Fatalf("%s: decode ConfigMap: %v", dir, err)
			}
			for k := range cm.Data {
				names[k] = true
			}
		}
		for name := range names {
			rest, ok := strings.CutPrefix(name, "SECRETBROKER_")
			if !ok {
				continue
			}
			flag := strings.ToLower(strings.ReplaceAll(rest, "_", "-"))
			if !flags[flag] {
				t.Errorf("%s: %s sets --%s, which the broker does not have", dir, name, flag)
			}
		}
	}
}

// TestNoRemoteBases checks that every kustomization names local paths
// only, so that a build needs no network.
func TestNoRemoteBases(t *testing.T) {
	remote := regexp.MustCompile(`://|^git@|^github\.com/|\?ref=|^ssh:`)
	n := 0
	err := filepath.WalkDir(".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() || (e.Name() != "kustomization.yaml" && e.Name() != "kustomization.yml" && e.Name() != "Kustomization") {
			return nil
		}
		n++
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var k struct {
			Resources  []string `yaml:"resources"`
			Components []string `yaml:"components"`
			Bases      []string `yaml:"bases"`
		}
		if err := yaml.Unmarshal(data, &k); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, ref := range slices.Concat(k.Resources, k.Components, k.Bases) {
			if remote.MatchString(ref) {
				t.Errorf("%s: %s is remote; builds must work offline", p, ref)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no kustomization files found")
	}
}

// TestQuantities checks the two size parsers the GOMEMLIMIT and
// resources checks use.
func TestQuantities(t *testing.T) {
	tests := []struct {
		in      string
		goLimit bool   // GOMEMLIMIT's syntax, else a Kubernetes quantity
		want    string // a big.Rat; "" for an error
	}{
		{"512Mi", false, "536870912"},
		{"1Gi", false, "1073741824"},
		{"500M", false, "500000000"},
		{"1.5Gi", false, "1610612736"},
		{"100m", false, "1/10"},
		{"2", false, "2"},
		{"12Q", false, ""},
		{"-1Gi", false, ""},
		{"460MiB", true, "482344960"},
		{"1GiB", true, "1073741824"},
		{"123456", true, "123456"},
		{"100B", true, "100"},
		{"460Mi", true, ""}, // Go wants MiB
		{"", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			parse := parseQuantity
			if tt.goLimit {
				parse = parseGoMemLimit
			}
			got, err := parse(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("got %v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want, _ := new(big.Rat).SetString(tt.want)
			if got.Cmp(want) != 0 {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}

// overlayDirs lists the directories under overlays/ with a kustomization.
func overlayDirs(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("overlays")
	if err != nil {
		t.Fatalf("read overlays: %v", err)
	}
	var dirs []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join("overlays", e.Name(), "kustomization.yaml")); err == nil {
			dirs = append(dirs, "overlays/"+e.Name())
		}
	}
	return dirs
}

// goCommand returns the go command's path. Without one on PATH the test
// skips, except under CI=true, where it fails.
func goCommand(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the go command is not on PATH: %v", err)
		}
		t.Skipf("the go command is not on PATH (%v): the rendered manifests are not checked", err)
	}
	return goBin
}

// build runs the pinned kustomize (.ci/tools/go.mod) on deploy/dir from
// the module root and returns its output.
func build(t *testing.T, dir string) []byte {
	t.Helper()
	goBin := goCommand(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "tool", "-modfile=.ci/tools/go.mod", "kustomize", "build", "deploy/"+dir)
	cmd.Dir = ".."
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kustomize build deploy/%s: %v\n%s", dir, err, stderr.String())
	}
	return stdout.Bytes()
}
