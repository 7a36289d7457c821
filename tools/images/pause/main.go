// Command pause is the sandbox ("infra") container of every pod on the local node: it holds
// the pod's namespaces open and does nothing else, as registry.k8s.io/pause does.
//
// As PID 1 of the pod it reaps orphaned children (SIGCHLD) and exits on SIGINT or SIGTERM.
// Built static (CGO_ENABLED=0), so its image holds this one file.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println("pause (oncallm)")
		return
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			for {
				var status syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		fmt.Fprintf(os.Stderr, "pause: shutting down on %v\n", sig)
		os.Exit(0)
	}
}
