// Command duckherd-dns is the cluster DNS of the local test cluster (hack/cluster): a small
// stand-in for CoreDNS's kubernetes plugin, run on the node as a process. It answers
//
//	<service>.<namespace>.svc.<domain>            A  ClusterIP (headless: the ready endpoints)
//	<hostname>.<service>.<namespace>.svc.<domain> A  that endpoint of a headless Service
//
// from informers on Services and EndpointSlices, NXDOMAIN for other names in the cluster
// domain, and forwards everything else to the node's own resolvers (/etc/resolv.conf), so a
// pod resolves exactly what the node resolves plus the cluster's names.
package main

import (
	"context"
	"flag"
	"net"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

const ttl = 5

type server struct {
	domain    string // "svc.cluster.local."
	zone      string // "cluster.local."
	services  listersv1.ServiceLister
	slices    discoverylisters.EndpointSliceLister
	upstreams []string
	client    *dns.Client
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "path to a kubeconfig")
	listen := flag.String("listen", "127.0.0.1:53", "address to serve DNS on (UDP and TCP)")
	clusterDomain := flag.String("cluster-domain", "cluster.local", "cluster domain")
	resolvConf := flag.String("resolv-conf", "/etc/resolv.conf", "upstream resolvers for other names")
	klog.InitFlags(nil)
	flag.Parse()

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Exitf("kubeconfig: %v", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		klog.Exitf("client: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	factory := informers.NewSharedInformerFactory(client, 10*time.Minute)
	s := &server{
		zone:     dns.Fqdn(*clusterDomain),
		domain:   dns.Fqdn("svc." + *clusterDomain),
		services: factory.Core().V1().Services().Lister(),
		slices:   factory.Discovery().V1().EndpointSlices().Lister(),
		client:   &dns.Client{Timeout: 5 * time.Second},
	}
	if rc, err := dns.ClientConfigFromFile(*resolvConf); err == nil {
		for _, ns := range rc.Servers {
			s.upstreams = append(s.upstreams, net.JoinHostPort(ns, rc.Port))
		}
	} else {
		klog.Warningf("no upstream resolvers (%v): only cluster names resolve", err)
	}
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			klog.Exitf("cache for %v did not sync", typ)
		}
	}

	mux := dns.NewServeMux()
	mux.HandleFunc(".", s.serve)
	errs := make(chan error, 2)
	servers := []*dns.Server{
		{Addr: *listen, Net: "udp", Handler: mux},
		{Addr: *listen, Net: "tcp", Handler: mux},
	}
	for _, srv := range servers {
		go func(srv *dns.Server) { errs <- srv.ListenAndServe() }(srv)
	}
	klog.Infof("serving %s on %s, upstreams %v", s.zone, *listen, s.upstreams)
	select {
	case <-ctx.Done():
	case err := <-errs:
		klog.Errorf("dns server: %v", err)
	}
	for _, srv := range servers {
		_ = srv.Shutdown()
	}
}

func (s *server) serve(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		refuse(w, req)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if name != s.zone && !strings.HasSuffix(name, "."+s.zone) {
		s.forward(w, req)
		return
	}
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	ips, found := s.lookup(name)
	if !found {
		resp.Rcode = dns.RcodeNameError
	} else if q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY {
		for _, ip := range ips {
			if v4 := ip.To4(); v4 != nil {
				resp.Answer = append(resp.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
					A:   v4,
				})
			}
		}
	}
	_ = w.WriteMsg(resp)
}

// lookup resolves a name in the cluster domain; found is false for names that do not exist.
func (s *server) lookup(name string) (ips []net.IP, found bool) {
	if !strings.HasSuffix(name, "."+s.domain) {
		return nil, false
	}
	labels := strings.Split(strings.TrimSuffix(name, "."+s.domain), ".")
	var hostname string
	switch len(labels) {
	case 2: // service.namespace
	case 3: // hostname.service.namespace
		hostname = labels[0]
		labels = labels[1:]
	default:
		return nil, false
	}
	svc, err := s.services.Services(labels[1]).Get(labels[0])
	if err != nil {
		return nil, false
	}
	if hostname == "" && svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, true
	}
	if hostname == "" && svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone {
		return []net.IP{net.ParseIP(svc.Spec.ClusterIP)}, true
	}
	// Headless: the ready endpoints (or the one with that hostname).
	sel := labels2selector(discoveryv1.LabelServiceName, svc.Name)
	slices, err := s.slices.EndpointSlices(svc.Namespace).List(sel)
	if err != nil {
		return nil, hostname == ""
	}
	for _, slice := range slices {
		for _, ep := range slice.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			if hostname != "" && (ep.Hostname == nil || *ep.Hostname != hostname) {
				continue
			}
			for _, a := range ep.Addresses {
				if ip := net.ParseIP(a); ip != nil {
					ips = append(ips, ip)
				}
			}
		}
	}
	return ips, hostname == "" || len(ips) > 0
}

func labels2selector(key, value string) labels.Selector {
	return labels.SelectorFromSet(labels.Set{key: value})
}

func (s *server) forward(w dns.ResponseWriter, req *dns.Msg) {
	network := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	c := *s.client
	c.Net = network
	for _, upstream := range s.upstreams {
		resp, _, err := c.Exchange(req, upstream)
		if err == nil {
			_ = w.WriteMsg(resp)
			return
		}
		klog.V(2).Infof("forward %s to %s: %v", req.Question[0].Name, upstream, err)
	}
	resp := new(dns.Msg)
	resp.SetRcode(req, dns.RcodeServerFailure)
	_ = w.WriteMsg(resp)
}

func refuse(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetRcode(req, dns.RcodeRefused)
	_ = w.WriteMsg(resp)
}

