// Command openapifix owns the corrections .ci/generate makes to the
// OpenAPI document protoc-gen-openapiv2 writes: the names of the path
// parameters that expand_slashed_path_patterns=true gives to a resource
// name's segments, the query parameters a path's own segment replaces, and
// the fields the gateway may answer null.
//
// The generator names each "*" of {name=orgs/*/actions/secrets/*} after the
// literal before it, without its plural "s" ({org}, {secret}), which fails
// where two "*" follow one literal: repos/*/* becomes
// "/repos/{repo}/{{repo}}", with parameters named "repo" and "{repo}".
// openapifix renames those from a table ("repos" holds {owner} then
// {repo}), gives every expanded parameter a description, and fails, rather
// than write a broken document, on any doubled name the table does not
// know, on a path parameter the template does not hold or a template
// variable without its parameter.
//
// A query parameter that a path segment stands for is dropped
// (pathReplaces): the gateway refuses both together, so the document must
// not offer it where the path always holds the segment.
//
// The gateway writes every field (protojson's EmitUnpopulated), so an unset
// message field (an operation's error, a result's retry_after, a secret's
// updated_at) is answered as null, which the generated schemas, a $ref or
// a string, do not allow: a client generated from them, or a validator,
// refuses the answer. Each such property is marked "x-nullable": true (a
// $ref wrapped in allOf, since a $ref's siblings are ignored), found from
// the API's descriptors: a definition's property is a message field,
// neither repeated, a map nor in a oneof (protojson leaves out an unset
// oneof member), of every message whose fields hold the definition's
// properties.
//
// Every operation's 401, 429 and 503 answers get the headers the gateway
// sends with them (responseHeaders): protoc-gen-openapiv2 drops the headers
// of the responses the proto's file-wide options give every operation.
//
// The gateway refuses some requests before a route's handler runs, and the
// proto cannot say so: 415 to a POST, PUT or PATCH whose Content-Type is
// not JSON's, 413 to a body over its limit on a route that takes one
// (gatewayRefusals). Each operation those apply to gets that answer.
//
// The gateway's GET /healthz (grpc-gateway's WithHealthzEndpoint: the gRPC
// health Check) and GET /openapi.json (this document) are no RPCs of the
// API, so the generator does not write them: they are added from
// extraPaths, with their answers' definitions.
//
// The gateway answers a method a path does not list with 405 and an Allow
// header, which Swagger 2.0 cannot attach to an operation that does not
// exist: that answer is a root response definition, MethodNotAllowed,
// named by a note in the info's description (addMethodNotAllowed).
//
// Usage: go run ./cmd/openapifix FILE (rewrites FILE in place).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"

	// grpc.health.v1, whose HealthCheckResponse GET /healthz answers
	// (markNullable finds its fields).
	_ "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	// The API's messages, registered in protoregistry.GlobalFiles.
	_ "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: openapifix FILE")
		os.Exit(2)
	}
	if err := fixFile(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "openapifix:", err)
		os.Exit(1)
	}
}

// fixFile rewrites the OpenAPI document in file with fix.
func fixFile(file string) error {
	in, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading the document: %w", err)
	}
	out, err := fix(in)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if err := os.WriteFile(file, out, 0o644); err != nil {
		return fmt.Errorf("writing the document: %w", err)
	}
	return nil
}

// pairNames names the two segments that follow a literal with two "*"
// after it, by that literal.
var pairNames = map[string][2]string{
	"repos": {"owner", "repo"},
}

// paramDescriptions describes the path parameters that the resource names'
// segments become.
var paramDescriptions = map[string]string{
	"org":         "The organization's login, for example \"acme\".",
	"owner":       "The repository owner's login, for example \"acme\".",
	"repo":        "The repository's name, for example \"api\".",
	"environment": "The environment's name, for example \"prod\" (\"prod/eu\" is sent path-escaped, as prod%2Feu).",
	"secret":      "The secret's name, for example \"DEPLOY_TOKEN\"; stored upper-case.",
	"operation":   "The operation's ID, the last segment of its name \"operations/{id}\".",
}

// pathReplaces names, by path parameter, the query parameters that the
// parameter stands for: {repository} (a name or an id) is
// AddSelectedRepository's repository_id, which the gateway refuses with
// it ("give repository or repository_id, not both").
var pathReplaces = map[string][]any{
	"repository": {"repository_id"},
}

// responseHeaders are the headers the gateway answers with a status code,
// added to every operation's response of that code.
var responseHeaders = map[string]map[string]any{
	"401": {"WWW-Authenticate": map[string]any{
		"type":        "string",
		"description": `The scheme the broker wants: Bearer realm="secretbroker".`,
	}},
	"429": {"Retry-After": map[string]any{
		"type":        "integer",
		"description": "Seconds to wait before trying again, a whole number rounded up.",
	}},
	"503": {"Retry-After": map[string]any{
		"type":        "integer",
		"description": "When present: seconds to wait before trying again, a whole number rounded up.",
	}},
}

// statusSchema is the gateway's error shape, google.rpc.Status, which every
// error answer has.
var statusSchema = map[string]any{"$ref": "#/definitions/rpcStatus"}

// gatewayRefusals are the answers the gateway (gateway.ServeHTTP and its
// bodies middleware) gives before the mux calls a route's RPC, each with
// the operations it applies to: by the operation's method, and whether the
// route takes a body (a "body" parameter).
var gatewayRefusals = []struct {
	code        string
	methods     []string // lower case, as the document's keys
	bodyOnly    bool     // only to an operation that takes a body
	description string
}{
	{"413", []string{"post", "put", "patch"}, true,
		"INVALID_ARGUMENT: the request body is larger than the gateway's limit (the message says it), by its Content-Length or as it arrives; nothing of it was decoded."},
	{"415", []string{"post", "put", "patch"}, false,
		"INVALID_ARGUMENT: the request has a body, or a Content-Type, and its Content-Type is not application/json (one header; any parameter, a charset, is accepted)."},
}

// extraPaths are the gateway's paths that are no RPC of the API, as
// document paths, and extraDefinitions the definitions they name.
var extraPaths = map[string]any{
	"/openapi.json": map[string]any{"get": map[string]any{
		"summary":     "This document: the JSON gateway's OpenAPI description (Swagger 2.0).",
		"description": "Open to every caller (no credentials), and served whether or not the broker is ready. A query is ignored.",
		"operationId": "OpenAPI_Get",
		"tags":        []any{"OpenAPI"},
		"security":    []any{},
		"responses": map[string]any{
			"200": map[string]any{"description": "The document.", "schema": map[string]any{
				"type":     "object",
				"required": []any{"swagger", "info", "paths"},
				"properties": map[string]any{
					"swagger": map[string]any{"type": "string", "enum": []any{"2.0"}},
					"info":    map[string]any{"type": "object"},
					"paths":   map[string]any{"type": "object"},
				},
			}},
			"400": map[string]any{"description": "INVALID_ARGUMENT: the query is malformed or not UTF-8.", "schema": statusSchema},
		},
	}},
	"/healthz": map[string]any{"get": map[string]any{
		"summary":     "The broker's health: the gRPC health service's Check, over JSON.",
		"description": "Open to every caller (no credentials). The broker serves while it answers 200.",
		"operationId": "Health_Check",
		"tags":        []any{"Health"},
		"security":    []any{},
		"parameters": []any{map[string]any{
			"name": "service", "in": "query", "required": false, "type": "string",
			"description": "The service to check: none (the whole server) or secretbroker.v1.SecretService.",
		}},
		"responses": map[string]any{
			"200": map[string]any{"description": "SERVING.", "schema": map[string]any{"$ref": "#/definitions/v1HealthCheckResponse"}},
			"400": map[string]any{"description": "INVALID_ARGUMENT: the query is malformed or not UTF-8.", "schema": statusSchema},
			"404": map[string]any{"description": "NOT_FOUND: the service is not one the broker knows.", "schema": statusSchema},
			"503": map[string]any{"description": "UNAVAILABLE: NOT_SERVING (starting, its credential or keys not yet checked, or stopping).", "schema": statusSchema},
		},
	}},
}

var extraDefinitions = map[string]any{
	"v1HealthCheckResponse": map[string]any{
		"type": "object",
		"properties": map[string]any{"status": map[string]any{
			"type": "string", "enum": []any{"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"},
		}},
		"description": "grpc.health.v1.HealthCheckResponse.",
	},
}

// methodNotAllowed is the answer to a method a path does not list, which
// Swagger 2.0 has no place for: a path item lists only the operations it
// has, and a response belongs to one of them. It is a response definition
// at the document's root ("responses", which the specification says makes
// no response of any operation), named by a note appended to the info's
// description (methodNotAllowedNote). The gateway's routingError answers
// it, with an Allow header, to a URL some route matches for other methods
// only.
var methodNotAllowed = map[string]any{
	"description": "UNIMPLEMENTED: the path does not take the request's method. Answered to any method a path does not list.",
	"schema":      statusSchema,
	"headers": map[string]any{"Allow": map[string]any{
		"type":        "string",
		"description": `The methods the paths that match the request's URL list, upper case, comma-separated, sorted: "DELETE, GET, PUT".`,
	}},
}

const (
	methodNotAllowedName = "MethodNotAllowed"
	methodNotAllowedNote = " A request whose URL a path matches, with a method that no path matching it lists, is answered " +
		"405 Method Not Allowed, with an Allow header naming the methods those paths list (a URL may match several: " +
		".../secrets/public-key is also .../secrets/{secret}), and a google.rpc.Status (#/responses/" + methodNotAllowedName + ")."
)

// doubled matches "/LITERAL/{a}/{{a}}" in a generated path.
var doubled = regexp.MustCompile(`/([A-Za-z0-9_.-]+)/\{([A-Za-z0-9_]+)\}/\{\{([A-Za-z0-9_]+)\}\}`)

// templateVar matches a variable in a path template.
var templateVar = regexp.MustCompile(`\{([^{}/]*)\}`)

// fix returns doc with its path parameters renamed and described, as
// indented JSON with a final newline.
func fix(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var root map[string]any
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("decoding the document: %w", err)
	}
	paths, ok := root["paths"].(map[string]any)
	if !ok {
		return nil, errors.New("the document has no paths object")
	}
	fixed := make(map[string]any, len(paths))
	for path, item := range paths {
		if extra, ok := extraPaths[path]; ok {
			if !reflect.DeepEqual(item, extra) { // the same: a document fixed before
				return nil, fmt.Errorf("path %s: generated already", path)
			}
			continue // added below
		}
		newPath, renames, err := fixPath(path)
		if err != nil {
			return nil, err
		}
		if _, dup := fixed[newPath]; dup {
			return nil, fmt.Errorf("two paths become %s", newPath)
		}
		ops, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("path %s: not an object", path)
		}
		for method, op := range ops {
			if err := fixOperation(newPath, method, op, renames); err != nil {
				return nil, err
			}
		}
		fixed[newPath] = item
	}
	maps.Copy(fixed, extraPaths)
	root["paths"] = fixed
	if len(extraDefinitions) > 0 && root["definitions"] == nil {
		root["definitions"] = map[string]any{}
	}
	if defs, ok := root["definitions"].(map[string]any); ok {
		for name, d := range extraDefinitions {
			if old, dup := defs[name]; dup && !reflect.DeepEqual(old, d) {
				return nil, fmt.Errorf("definition %s: generated already", name)
			}
			defs[name] = d
		}
		if err := markNullable(defs, apiMessages()); err != nil {
			return nil, err
		}
	}
	if err := addMethodNotAllowed(root); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("encoding the document: %w", err)
	}
	return buf.Bytes(), nil
}

// addMethodNotAllowed adds methodNotAllowed to root's response definitions
// and its note to the end of the info's description, each unless there
// already (a document fixed before).
func addMethodNotAllowed(root map[string]any) error {
	info, ok := root["info"].(map[string]any)
	if !ok {
		info = map[string]any{}
		root["info"] = info
	}
	desc, _ := info["description"].(string)
	if !strings.HasSuffix(desc, strings.TrimPrefix(methodNotAllowedNote, " ")) {
		info["description"] = strings.TrimPrefix(desc+methodNotAllowedNote, " ")
	}
	if root["responses"] == nil {
		root["responses"] = map[string]any{}
	}
	resps, ok := root["responses"].(map[string]any)
	if !ok {
		return errors.New("the document's responses is not an object")
	}
	if old, dup := resps[methodNotAllowedName]; dup && !reflect.DeepEqual(old, methodNotAllowed) {
		return fmt.Errorf("response %s: generated already", methodNotAllowedName)
	}
	resps[methodNotAllowedName] = methodNotAllowed
	return nil
}

// fixPath returns path with each doubled name replaced from pairNames, and
// the parameter renames that go with it (old name to new name).
func fixPath(path string) (string, map[string]string, error) {
	renames := map[string]string{}
	var err error
	out := doubled.ReplaceAllStringFunc(path, func(m string) string {
		sub := doubled.FindStringSubmatch(m)
		lit, first, second := sub[1], sub[2], sub[3]
		names, ok := pairNames[lit]
		if !ok || first != second {
			err = fmt.Errorf("path %s: no names for the two segments after %q", path, lit)
			return m
		}
		renames[first] = names[0]
		renames["{"+second+"}"] = names[1]
		return "/" + lit + "/{" + names[0] + "}/{" + names[1] + "}"
	})
	if err != nil {
		return "", nil, err
	}
	if strings.Contains(out, "{{") || strings.Contains(out, "}}") {
		return "", nil, fmt.Errorf("path %s: a doubled parameter name is left", path)
	}
	return out, renames, nil
}

// fixOperation renames op's path parameters, describes those without a
// description, puts them in the template's order, ahead of the others, and
// checks that they are exactly the variables of path.
func fixOperation(path, method string, op any, renames map[string]string) error {
	o, ok := op.(map[string]any)
	if !ok {
		return fmt.Errorf("%s %s: not an object", method, path)
	}
	var want []string
	for _, m := range templateVar.FindAllStringSubmatch(path, -1) {
		want = append(want, m[1])
	}
	if resps, ok := o["responses"].(map[string]any); ok {
		for _, g := range gatewayRefusals {
			if _, ok := resps[g.code]; ok || !slices.Contains(g.methods, method) || (g.bodyOnly && !takesBody(o)) {
				continue
			}
			resps[g.code] = map[string]any{"description": g.description, "schema": statusSchema}
		}
		for code, hs := range responseHeaders {
			r, ok := resps[code].(map[string]any)
			if !ok {
				continue
			}
			headers, _ := r["headers"].(map[string]any)
			if headers == nil {
				headers = map[string]any{}
				r["headers"] = headers
			}
			for name, h := range hs {
				if _, ok := headers[name]; !ok {
					headers[name] = h
				}
			}
		}
	}
	params, _ := o["parameters"].([]any)
	params = slices.DeleteFunc(params, func(p any) bool {
		pm, _ := p.(map[string]any)
		return pm["in"] == "query" && slices.ContainsFunc(want, func(v string) bool {
			return slices.Contains(pathReplaces[v], pm["name"])
		})
	})
	byName := map[string]any{}
	var rest []any
	for _, p := range params {
		pm, ok := p.(map[string]any)
		if !ok || pm["in"] != "path" {
			rest = append(rest, p)
			continue
		}
		name, _ := pm["name"].(string)
		if n, ok := renames[name]; ok {
			name = n
			pm["name"] = n
		}
		if _, ok := pm["description"]; !ok {
			if d, ok := paramDescriptions[name]; ok {
				pm["description"] = d
			}
		}
		if _, dup := byName[name]; dup {
			return fmt.Errorf("%s %s: two path parameters named %q", method, path, name)
		}
		byName[name] = pm
	}
	ordered := make([]any, 0, len(params))
	for _, name := range want {
		p, ok := byName[name]
		if !ok {
			return fmt.Errorf("%s %s: no parameter for the path's {%s}", method, path, name)
		}
		ordered = append(ordered, p)
		delete(byName, name)
	}
	for name := range byName {
		return fmt.Errorf("%s %s: path parameter %q is not in the path", method, path, name)
	}
	if len(ordered)+len(rest) > 0 {
		o["parameters"] = append(ordered, rest...)
	}
	return nil
}

// takesBody reports whether operation o has a body parameter.
func takesBody(o map[string]any) bool {
	params, _ := o["parameters"].([]any)
	return slices.ContainsFunc(params, func(p any) bool {
		pm, _ := p.(map[string]any)
		return pm["in"] == "body"
	})
}

// apiMessages returns every message of the API's files and the files they
// import (google.rpc.Status, the well-known types), nested ones included.
func apiMessages() []protoreflect.MessageDescriptor {
	var out []protoreflect.MessageDescriptor
	var add func(protoreflect.MessageDescriptors)
	add = func(ms protoreflect.MessageDescriptors) {
		for i := range ms.Len() {
			out = append(out, ms.Get(i))
			add(ms.Get(i).Messages())
		}
	}
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		add(fd.Messages())
		return true
	})
	return out
}

// markNullable marks each property of defs that the gateway may answer
// null (see the package comment). A definition with properties no message
// holds fails: the document would say nothing true of it.
func markNullable(defs map[string]any, msgs []protoreflect.MessageDescriptor) error {
	for name, d := range defs {
		dm, _ := d.(map[string]any)
		props, _ := dm["properties"].(map[string]any)
		var keys []string
		for k := range props {
			if !strings.HasPrefix(k, "@") { // protobufAny's @type
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 {
			continue
		}
		var holders []protoreflect.MessageDescriptor
		for _, m := range msgs {
			if !slices.ContainsFunc(keys, func(k string) bool { return m.Fields().ByName(protoreflect.Name(k)) == nil }) {
				holders = append(holders, m)
			}
		}
		if len(holders) == 0 {
			return fmt.Errorf("definition %s: no message has the fields %v", name, keys)
		}
		for _, k := range keys {
			nullable := nullableField(holders[0].Fields().ByName(protoreflect.Name(k)))
			for _, m := range holders[1:] {
				if nullableField(m.Fields().ByName(protoreflect.Name(k))) != nullable {
					return fmt.Errorf("definition %s: messages %s and %s disagree on whether %s may be null",
						name, holders[0].FullName(), m.FullName(), k)
				}
			}
			if !nullable {
				continue
			}
			p, ok := props[k].(map[string]any)
			if !ok {
				return fmt.Errorf("definition %s: property %s is not an object", name, k)
			}
			if ref, ok := p["$ref"]; ok {
				delete(p, "$ref")
				p["allOf"] = []any{map[string]any{"$ref": ref}}
			}
			p["x-nullable"] = true
		}
	}
	return nil
}

// nullableField reports whether protojson, emitting unpopulated fields,
// writes fd as null when it is unset: a singular message field outside a
// oneof.
func nullableField(fd protoreflect.FieldDescriptor) bool {
	return fd.Message() != nil && !fd.IsList() && !fd.IsMap() && fd.ContainingOneof() == nil
}
