package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// secretPathRepo is the escaped path of repActions' secret S.
const secretPathRepo = "/repos/acme/api/actions/secrets/S"

// A write answered with a 301, 302 or 303 is not re-sent as a GET (which
// Go's http.Client does by default, and whose 200 would pass for the
// write's answer): the caller gets the 3xx as an *Error, not retried,
// whether the http.Client is the default one or the caller's.
func TestRedirectChangingTheMethodIsNotFollowed(t *testing.T) {
	const sealed = "U0VBTEVEcmVkaXJlY3RTRUFMRUQ="
	put := func(ctx context.Context, c *Client) error {
		created, err := c.PutSecret(ctx, repActions, "S", PutSecretBody{EncryptedValue: sealed, KeyID: "k1"})
		if err == nil && created {
			return errors.New("created = true")
		}
		return err
	}
	del := func(ctx context.Context, c *Client) error { return c.DeleteSecret(ctx, repActions, "S") }
	for _, call := range []struct {
		name   string
		method string
		do     func(context.Context, *Client) error
	}{
		{"PutSecret", http.MethodPut, put},
		{"DeleteSecret", http.MethodDelete, del},
	} {
		for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther} {
			for _, own := range []bool{false, true} {
				name := fmt.Sprintf("%s %d default client", call.name, status)
				if own {
					name = fmt.Sprintf("%s %d own client", call.name, status)
				}
				t.Run(name, func(t *testing.T) {
					f := newFake(t, func(r *http.Request) reply {
						if r.URL.Path == secretPathRepo {
							return reply{Status: status, Header: map[string]string{"Location": "/elsewhere"},
								Body: `{"message":"Moved Permanently","url":"/elsewhere"}`}
						}
						return reply{Status: http.StatusOK, Body: `{}`}
					})
					cfg := Config{BaseURL: f.URL}
					if own {
						cfg.HTTPClient = &http.Client{}
					}
					c := newClient(t, cfg)
					err := call.do(t.Context(), c)
					var e *Error
					if !errors.As(err, &e) || e.StatusCode != status {
						t.Fatalf("err = %v, want a %d *Error", err, status)
					}
					if e.Method != call.method || !strings.Contains(e.Message, "redirect") || !strings.Contains(e.Message, "method") {
						t.Errorf("error %+v: want the method and a message saying the redirect was not followed", e)
					}
					msg := err.Error() + fmt.Sprintf(" %#v", *e)
					if strings.Contains(msg, testToken) || strings.Contains(msg, sealed) || strings.Contains(msg, "elsewhere") {
						t.Errorf("error shows the token, the body or the Location: %s", msg)
					}
					hits := f.Hits()
					if len(hits) != 1 {
						t.Fatalf("%d requests, want 1 (no GET, no retry): %+v", len(hits), hits)
					}
					if hits[0].Method != call.method || hits[0].EscapedPath != secretPathRepo {
						t.Errorf("request %s %s", hits[0].Method, hits[0].EscapedPath)
					}
					if f.count("/elsewhere") != 0 {
						t.Error("the redirect was followed")
					}
				})
			}
		}
	}
}

// A 307 or 308 keeps the method and the body, so it is followed.
func TestRedirectKeepingTheMethodIsFollowed(t *testing.T) {
	const sealed = "U0VBTEVEcmVkaXJlY3RTRUFMRUQ="
	for _, status := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			f := newFake(t, func(r *http.Request) reply {
				switch {
				case r.URL.Path == secretPathRepo:
					return reply{Status: status, Header: map[string]string{"Location": "/moved/S"}}
				case r.URL.Path == "/moved/S" && r.Method == http.MethodPut:
					return reply{Status: http.StatusCreated, Body: `{}`}
				case r.URL.Path == "/moved/S" && r.Method == http.MethodDelete:
					return reply{Status: http.StatusNoContent}
				}
				return reply{Status: http.StatusOK, Body: `{}`}
			})
			c := newClient(t, Config{BaseURL: f.URL})
			created, err := c.PutSecret(t.Context(), repActions, "S", PutSecretBody{EncryptedValue: sealed, KeyID: "k1"})
			if err != nil || !created {
				t.Fatalf("PutSecret = %v, %v; want created", created, err)
			}
			if err := c.DeleteSecret(t.Context(), repActions, "S"); err != nil {
				t.Fatalf("DeleteSecret: %v", err)
			}
			want := []struct{ method, path, body string }{
				{http.MethodPut, secretPathRepo, `{"encrypted_value":"` + sealed + `","key_id":"k1"}`},
				{http.MethodPut, "/moved/S", `{"encrypted_value":"` + sealed + `","key_id":"k1"}`},
				{http.MethodDelete, secretPathRepo, ""},
				{http.MethodDelete, "/moved/S", ""},
			}
			hits := f.Hits()
			if len(hits) != len(want) {
				t.Fatalf("%d requests, want %d: %+v", len(hits), len(want), hits)
			}
			for i, w := range want {
				if h := hits[i]; h.Method != w.method || h.EscapedPath != w.path || h.Body != w.body {
					t.Errorf("request %d: %s %s %q, want %s %s %q", i, h.Method, h.EscapedPath, h.Body, w.method, w.path, w.body)
				}
			}
		})
	}
}

// Config.HTTPClient's own CheckRedirect still decides the redirects that
// keep the method, and the caller's http.Client is left as it was.
func TestRedirectKeepsTheCallersCheckRedirect(t *testing.T) {
	for _, tc := range []struct {
		name    string
		verdict error // what the caller's CheckRedirect returns
		want    int   // 0: success
	}{
		{"followed", nil, 0},
		{"stopped with the last response", http.ErrUseLastResponse, http.StatusFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, func(r *http.Request) reply {
				switch {
				case r.URL.Path == secretPathRepo && r.Method == http.MethodGet:
					return reply{Status: http.StatusFound, Header: map[string]string{"Location": "/elsewhere"}}
				case r.URL.Path == secretPathRepo:
					return reply{Status: http.StatusMovedPermanently, Header: map[string]string{"Location": "/elsewhere"}}
				}
				return reply{Status: http.StatusOK, Body: `{"name":"MOVED"}`}
			})
			var calls []string
			check := func(req *http.Request, via []*http.Request) error {
				calls = append(calls, fmt.Sprintf("%s %s after %d", req.Method, req.URL.Path, len(via)))
				return tc.verdict
			}
			tr := &http.Transport{}
			t.Cleanup(tr.CloseIdleConnections)
			own := &http.Client{Transport: tr, CheckRedirect: check, Timeout: 7 * time.Second}
			c := newClient(t, Config{BaseURL: f.URL, HTTPClient: own})

			sec, err := c.GetSecret(t.Context(), repActions, "S")
			if tc.want == 0 {
				if err != nil || sec.Name != "MOVED" {
					t.Fatalf("GetSecret = %+v, %v; want the redirect's answer", sec, err)
				}
			} else {
				var e *Error
				if !errors.As(err, &e) || e.StatusCode != tc.want || !strings.Contains(e.Message, "not followed") {
					t.Fatalf("err = %v, want a %d *Error saying the redirect was not followed", err, tc.want)
				}
			}
			if want := []string{"GET /elsewhere after 1"}; !reflect.DeepEqual(calls, want) {
				t.Errorf("the caller's CheckRedirect saw %q, want %q", calls, want)
			}

			// A PUT's 301 is stopped before the caller's CheckRedirect.
			calls = nil
			_, err = c.PutSecret(t.Context(), repActions, "S", testPut)
			if e, ok := errors.AsType[*Error](err); !ok || e.StatusCode != http.StatusMovedPermanently {
				t.Errorf("PutSecret after a 301: %v, want a 301 *Error", err)
			}
			if len(calls) != 0 {
				t.Errorf("the caller's CheckRedirect saw %q for a redirect that changes the method", calls)
			}

			if reflect.ValueOf(own.CheckRedirect).Pointer() != reflect.ValueOf(check).Pointer() ||
				own.Transport != tr || own.Timeout != 7*time.Second || own.Jar != nil {
				t.Errorf("the caller's http.Client was modified: %+v", own)
			}
		})
	}
}

// Without a CheckRedirect of the caller's, a client follows at most 10
// redirects, as Go's default does.
func TestRedirectDefaultLimit(t *testing.T) {
	for _, own := range []bool{false, true} {
		t.Run(fmt.Sprint("own client ", own), func(t *testing.T) {
			f := newFake(t, fixed(reply{Status: http.StatusFound, Header: map[string]string{"Location": secretPathRepo}}))
			cfg := Config{BaseURL: f.URL}
			if own {
				cfg.HTTPClient = &http.Client{}
			}
			c := newClient(t, cfg)
			_, err := c.GetSecret(t.Context(), repActions, "S")
			if err == nil || !strings.Contains(err.Error(), "stopped after 10 redirects") {
				t.Fatalf("err = %v, want the redirect limit", err)
			}
			// Go's default stops when the 10th request is redirected
			// again: 10 requests in all.
			if n := len(f.Hits()); n != 10 {
				t.Errorf("%d requests, want 10", n)
			}
		})
	}
}

func TestRedirectMessage(t *testing.T) {
	for _, tc := range []struct {
		status  int
		refused bool
		want    string
	}{
		{301, true, "GitHub redirected the request (301) and the broker does not follow a redirect that changes the method; check the upstream URL"},
		{303, true, "GitHub redirected the request (303) and the broker does not follow a redirect that changes the method; check the upstream URL"},
		{302, false, "GitHub redirected the request (302) and the redirect was not followed; check the upstream URL"},
		{308, false, "GitHub redirected the request (308) and the redirect was not followed; check the upstream URL"},
		{304, false, ""},
		{404, false, ""},
	} {
		if got := redirectMessage(tc.status, tc.refused); got != tc.want {
			t.Errorf("redirectMessage(%d, %v) = %q, want %q", tc.status, tc.refused, got, tc.want)
		}
	}
}
