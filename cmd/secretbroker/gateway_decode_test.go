package main

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// decodeBoth decodes data into a new message like want's, once parsed in
// place (the body the gateway read whole) and once from a stream
// (JSONPb's own decoder), and returns both results.
func decodeBoth(t *testing.T, data []byte, want proto.Message) (inPlace, stream proto.Message, inPlaceErr, streamErr error) {
	t.Helper()
	m := newJSONMarshaler()
	inPlace, stream = want.ProtoReflect().New().Interface(), want.ProtoReflect().New().Interface()
	inPlaceErr = m.NewDecoder(newReadBody(bytes.Clone(data))).Decode(inPlace)
	streamErr = m.NewDecoder(bytes.NewReader(data)).Decode(stream)
	return inPlace, stream, inPlaceErr, streamErr
}

// sameDecoding fails t unless both paths agree: the same error, or the
// same message.
func sameDecoding(t *testing.T, data []byte, msg proto.Message) {
	t.Helper()
	inPlace, stream, inPlaceErr, streamErr := decodeBoth(t, data, msg)
	switch {
	case (inPlaceErr == nil) != (streamErr == nil):
		t.Errorf("%q: in place %v, stream %v", data, inPlaceErr, streamErr)
	case inPlaceErr != nil:
		if inPlaceErr.Error() != streamErr.Error() || errors.Is(inPlaceErr, io.EOF) != errors.Is(streamErr, io.EOF) {
			t.Errorf("%q: in place %q, stream %q", data, inPlaceErr, streamErr)
		}
	case !proto.Equal(inPlace, stream):
		t.Errorf("%q: in place %v, stream %v", data, inPlace, stream)
	}
}

// A body read whole is parsed once, in place; what it decodes to, and
// every refusal, is what JSONPb's own decoder gives.
func TestJSONDecoderPaths(t *testing.T) {
	for _, body := range []string{
		`{"name":"repos/o/r/actions/secrets/A","value":"v"}`,
		`  {"name":"repos/o/r/actions/secrets/A","value":"v"}` + "\n\t ",
		`{"requests":[{"name":"repos/o/r/actions/secrets/A","value":"v"},{"name":"orgs/o/actions/secrets/B","value":"w","visibility":"selected","selected_repository_ids":["1",2]}]}`,
		`{"requests":[]}{"requests":[]}`,
		`{"requests":[]} x`,
		``,
		"  \n",
		`null`,
		`[]`,
		`{"nope":1}`,
		`{"requests":[],"requests":[]}`,
		`{"requests":"PLANTED-value-9"}`,
		`{"requests":[{"value":12345}]}`,
		`{"requests":[`,
		`{"requests":[]`,
		"{\"requests\":[{\"value\":\"\xff\"}]}",
		`{'requests':[]}`,
		`{"requests":[{"name":"a","value":"b",}]}`,
	} {
		t.Run(body, func(t *testing.T) {
			sameDecoding(t, []byte(body), &secretbrokerv1.BatchPutSecretsRequest{})
		})
	}
	// The in-place path is the one taken: a body read whole and parsed
	// once leaves its reader unread.
	m := newJSONMarshaler()
	body := newReadBody([]byte(`{"requests":[{"name":"repos/o/r/actions/secrets/A","value":"v"}]}`))
	var req secretbrokerv1.BatchPutSecretsRequest
	if err := m.NewDecoder(body).Decode(&req); err != nil || len(req.GetRequests()) != 1 {
		t.Fatalf("decode: %v %v", &req, err)
	}
	if _, whole := body.unread(); !whole {
		t.Error("the body was read through the stream decoder, not parsed in place")
	}
}

// decodeErrorShape is every error the gateway's decoder gives for a body
// (decodeError and the decoder's own): a position and a field's name (a
// JSON key of the body's at most, of name characters), or a fixed phrase,
// or encoding/json's syntax error, which quotes one character. Nothing
// else of the body: a value never shows.
var decodeErrorShape = regexp.MustCompile(`^(?:EOF` +
	`|request body holds more than one JSON value` +
	`|request body ends inside its JSON value` +
	`|request body is not a valid JSON request` +
	`|request body is not valid JSON: (?:unexpected end of JSON input|invalid character '(?:\\'|\\\\|\\x[0-9a-f]{2}|\\u[0-9a-f]{4}|\\[a-z]|[^'\\])' [a-z :\\()'-]+)` +
	`|request body, line [0-9]+ column [0-9]+: (?:unknown field "[A-Za-z0-9_]*"|duplicate field "[A-Za-z0-9_]*"|invalid value for [a-z0-9]+ field [a-z0-9_]+` +
	`|(?:[a-z0-9_]+|a field|a duration|a timestamp): (?:want [a-z A-Z0-9"().:-]+|is not valid UTF-8)|a string is not valid UTF-8` +
	`|[a-z0-9_, ]+ and [a-z0-9_]+: set only one|two fields of one oneof are set: set only one))$`)

// FuzzJSONDecoderPaths: for any body, parsing in place and JSONPb's
// stream decoder agree on the message or on the error, and the error is
// of decodeErrorShape: it quotes no value of the body's.
func FuzzJSONDecoderPaths(f *testing.F) {
	for _, s := range []string{
		`{"requests":[{"name":"repos/o/r/actions/secrets/A","value":"v"}]}`,
		`{"requests":[]} {}`,
		`{"requests":[{"visibility":"selected","selected_repository_ids":["1",2]}]}`,
		`{"async":true,"requests":null}`,
		`{"requests":[{"encrypted_value":"AAAA","key_id":"1"}]}`,
		"",
		"null",
		`{"x":`,
		`{"name":"orgs/o/actions/secrets/A","value":PLANTED-s3cr3t}`,
		`{"name":"orgs/o/actions/secrets/A","value":["PLANTED-s3cr3t"]}`,
		`{"requests":["PLANTED-s3cr3t"]}`,
		`{"requests":[{"value":"PLANTED-s3cr3t" "name":"x"}]}`,
		`{"requests":[{"selected_repository_ids":["PLANTED-s3cr3t"]}]}`,
		`{"value":"PLANTED-s3cr3t","encrypted_value":"AAAA"}`,
		`{"value":"PLANTED-s3cr3t","value":"x"}`,
		"{\"value\":\"PLANTED\xffs3cr3t\"}",
		`{"value":"PLANTED-s3cr3t\u00"}`,
		`{"value":tPLANTED}`,
		`{"PLANTED-s3cr3t":1}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if strings.Count(body, "[") > 64 {
			return // deep nesting only costs time
		}
		for _, msg := range []proto.Message{&secretbrokerv1.BatchPutSecretsRequest{}, &secretbrokerv1.PutSecretRequest{}} {
			sameDecoding(t, []byte(body), msg)
			_, _, inPlaceErr, streamErr := decodeBoth(t, []byte(body), msg)
			for _, err := range []error{inPlaceErr, streamErr} {
				if err != nil && !decodeErrorShape.MatchString(err.Error()) {
					t.Errorf("%q: error %q is not of the known shapes", body, err)
				}
			}
		}
	})
}

// The gateway's answers are JSONPb's, byte for byte, and a newline:
// messages marshalled without JSONPb's buffer, anything else by JSONPb
// itself.
func TestJSONMarshalAsJSONPb(t *testing.T) {
	m := newJSONMarshaler()
	for _, v := range []any{
		&secretbrokerv1.PublicKey{KeyId: "568250167242549743", Key: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="},
		&secretbrokerv1.ListSecretsResponse{},
		&secretbrokerv1.PutSecretResponse{Created: true},
		map[string]any{"code": 5, "message": "not found"},
		[]string{"a", "b"},
	} {
		got, err := m.Marshal(v)
		want, wantErr := m.JSONPb.Marshal(v)
		want = append(want, '\n') // an answer ends its line
		if err != nil || wantErr != nil || !bytes.Equal(got, want) {
			t.Errorf("Marshal(%T) = %s, %v; JSONPb's %s, %v", v, got, err, want, wantErr)
		}
	}
}
