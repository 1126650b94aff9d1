package main

import (
	"flag"
	"fmt"
	"log/slog"

	"github.com/secretbroker/secretbroker/service/state"
)

// registerStateFlags adds the state store's flags to fs: --state-dir
// (default none: a memory store, lost on exit) and --state-hmac-key-file
// (default none: a random key generated once and kept in the store).
func registerStateFlags(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.StateDir, "state-dir", "",
		"`directory` of the broker's state file ("+state.BoltFileName+"): what it wrote, to skip unchanged writes, detect drift and prune only what an owner wrote (default: in memory, lost on exit)")
	fs.StringVar(&cfg.StateHMACKeyFile, "state-hmac-key-file", "",
		"`file` with the key (raw bytes, at least 32) the state's fingerprints are made under (default: a random key kept in the state store)")
}

// openState opens the state store the configuration asks for: the file
// store under --state-dir, else a memory store; with the key of
// --state-hmac-key-file when given. The caller closes it.
func openState(cfg Config, logger *slog.Logger) (state.Store, error) {
	var opts state.Options
	if cfg.StateHMACKeyFile != "" {
		key, err := state.ReadKeyFile(cfg.StateHMACKeyFile)
		if err != nil {
			return nil, err
		}
		opts.HMACKey = key
	}
	if cfg.StateDir == "" {
		st, err := state.NewMemory(opts)
		if err != nil {
			return nil, fmt.Errorf("state store: %w", err)
		}
		return st, nil
	}
	st, err := state.OpenBolt(cfg.StateDir, opts)
	if err != nil {
		return nil, fmt.Errorf("state store --state-dir %s: %w", cfg.StateDir, err)
	}
	logger.Info("state store opened", slog.String("path", st.Path()))
	return st, nil
}
