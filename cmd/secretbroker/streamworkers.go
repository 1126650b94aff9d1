package main

import "google.golang.org/grpc"

// grpcStreamWorkers is how many goroutines each gRPC server keeps to run
// calls on. A call served on a fresh goroutine grows that goroutine's
// stack (the service, the upstream client and net/http go deep) and the
// copying showed as about 5% of the broker's CPU in a profile of
// PutSecret at saturation; a worker keeps its grown stack from call to
// call. When every worker is busy a call gets a goroutine of its own as
// before, so this bounds nothing: admission stays with the front door.
// Idle workers cost their stacks, a few MB at most for both servers.
const grpcStreamWorkers = 64

// streamWorkerOption is the server option that starts the workers.
func streamWorkerOption() grpc.ServerOption {
	return grpc.NumStreamWorkers(grpcStreamWorkers)
}
