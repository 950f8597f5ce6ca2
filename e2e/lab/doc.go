// Package lab tests Chorus on containers: hosts with their own addresses,
// names and volumes, and real faults. Its test builds the image
// (deploy/build-image.sh), starts five nodes on a user-defined Docker
// network, joined by a join secret and DNS names alone, and then: writes on
// every node and reads everywhere; partitions two containers with `docker
// network disconnect` while both sides write (conflicting keys included),
// reconnects them and checks every acknowledged write on every node with
// the last-writer-wins winners; pauses a node (`docker pause`: suspect, then
// alive again after unpause); kills one (`docker kill`) and starts it
// again (its data kept, caught up); restarts all five one by one under
// continuous writes and checks that no acknowledged write is lost. It logs
// the convergence time after each heal and restart.
//
// It needs a Docker engine (the docker CLI and a reachable daemon) and
// skips, saying so, without one; CHORUS_LAB=0 skips it too. Every
// container, network, volume and image it makes carries a name unique to
// the run and is removed when the test ends, failed or not.
//
//	go test -v -count=1 -timeout 20m ./e2e/lab/
package lab
