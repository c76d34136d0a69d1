// Command etcd is etcd's own main (go.etcd.io/etcd/v3 main.go), built against the etcd server
// version that k8s.io/kubernetes pins, so no second copy of the etcd dependency tree is needed.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
