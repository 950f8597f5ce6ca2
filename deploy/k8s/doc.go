// Package k8s holds no code: it is the Go module of the Kubernetes
// manifests' test (manifests_test.go), kept apart from the main module so
// that k8s.io/api is not a dependency of Chorus itself.
package k8s
