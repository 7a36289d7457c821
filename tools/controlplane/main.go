// Command controlplane is a multi-call binary holding the parts of a real
// Kubernetes control plane that OnCallM's tests and demo run locally:
//
//	controlplane etcd ...                     (go.etcd.io/etcd/server/v3/etcdmain)
//	controlplane kube-apiserver ...           (k8s.io/kubernetes/cmd/kube-apiserver)
//	controlplane kube-controller-manager ...  (k8s.io/kubernetes/cmd/kube-controller-manager)
//	controlplane kube-scheduler ...           (k8s.io/kubernetes/cmd/kube-scheduler)
//	controlplane kubelet ...                  (k8s.io/kubernetes/cmd/kubelet)
//	controlplane kube-proxy ...               (k8s.io/kubernetes/cmd/kube-proxy)
//	controlplane kubectl ...                  (k8s.io/kubectl)
//
// The scheduler, kubelet and kube-proxy run only on a control plane started with a node
// (`oncallm controlplane up --node`).
//
// A link named after a component (bin/kubectl -> controlplane) runs that
// component, so the binary also serves as a plain kubectl.
//
// One binary instead of four because linking Kubernetes dominates the build:
// the shared dependencies are compiled and linked once.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

const usage = "usage: controlplane etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|kubectl [flags]"

func main() {
	sub := filepath.Base(os.Args[0])
	if sub == "controlplane" {
		if len(os.Args) < 2 {
			fmt.Fprintln(os.Stderr, usage)
			os.Exit(2)
		}
		sub = os.Args[1]
		// Each component parses os.Args itself; present it as if it were run alone.
		os.Args = append([]string{sub}, os.Args[2:]...)
	}
	switch sub {
	case "etcd":
		etcdmain.Main(os.Args)
	case "kube-apiserver":
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
	case "kube-scheduler":
		os.Exit(cli.Run(scheduler.NewSchedulerCommand()))
	case "kubelet":
		os.Exit(cli.Run(kubelet.NewKubeletCommand(context.Background())))
	case "kube-proxy":
		os.Exit(cli.Run(proxy.NewProxyCommand()))
	case "kubectl":
		os.Exit(cli.Run(kubectlcmd.NewDefaultKubectlCommand()))
	default:
		fmt.Fprintf(os.Stderr, "controlplane: unknown component %q\n%s\n", sub, usage)
		os.Exit(2)
	}
}
