// Package k8s is the opt-in Kubernetes end-to-end test of Chorus: a module
// of its own (so that the main go.mod does not pull in Kubernetes) that pins
// k8s.io/kubernetes, builds kube-apiserver, starts it on fresh Chorus nodes
// (real agent processes with --listen-etcd) and drives it with client-go.
//
// It runs only with CHORUS_K8S_E2E=1: building kube-apiserver takes about 9
// minutes on 2 cores. CHORUS_KUBE_APISERVER names a prebuilt binary to use
// instead; otherwise the test builds one into bin/ (ignored by git) and
// reuses it while the pinned version does not change. See README,
// "Kubernetes on Chorus".
//
//	CHORUS_K8S_E2E=1 go test -C e2e/k8s -v -timeout 60m .
//
// TestKubernetesFigures measures, in one run, the apiserver on a Chorus
// node beside the same apiserver on a lone etcd (built from e2e/etcdtools):
// start-up time, and the p50/p99 of create, get, list and watch delivery.
package k8s
