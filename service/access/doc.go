// Package access owns who may do what: the operator's policy rules, their
// glob patterns, and reloading the policy file.
//
// A policy is a list of rules; a call is allowed when some rule names its
// caller, its verb and its resource, and denied otherwise:
//
//	rules:
//	  - callers: ["x509:spiffe://example.org/ns/payments/sa/deployer", "token:ci-*"]
//	    verbs: [read, write, delete]
//	    resources: ["repos/acme/payments/environments/*/secrets/*", "orgs/acme/actions/secrets/PAYMENTS_*"]
//
// Callers and resources are matched with the same glob (see Match). A
// Watcher holds the current policy, swaps it atomically when the file's
// content changes, and keeps the last good policy when the file is broken.
package access
