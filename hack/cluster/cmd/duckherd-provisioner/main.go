// Command duckherd-provisioner is the dynamic volume provisioner of the local test cluster
// (hack/cluster). It does what rancher's local-path provisioner does, for one node and without
// helper pods (it runs on the node itself, as root): for every PersistentVolumeClaim that the
// PV controller hands to it (annotation volume.kubernetes.io/storage-provisioner), it makes a
// directory under --root and creates a hostPath PersistentVolume pre-bound to the claim, with
// node affinity to --node; when such a volume is Released and its reclaim policy is Delete, it
// removes the directory and the PersistentVolume. The PV controller in
// kube-controller-manager does the binding, exactly as with any external provisioner.
//
// It is level-based: every --interval it lists claims and volumes and converges, so a restart
// or a missed event loses nothing.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

const (
	annStorageProvisioner     = "volume.kubernetes.io/storage-provisioner"
	annBetaStorageProvisioner = "volume.beta.kubernetes.io/storage-provisioner"
	annProvisionedBy          = "pv.kubernetes.io/provisioned-by"
	annSelectedNode           = "volume.kubernetes.io/selected-node"
)

type provisioner struct {
	client kubernetes.Interface
	name   string
	root   string
	node   string
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "path to a kubeconfig")
	name := flag.String("name", "duckherd.io/hostpath", "provisioner name (StorageClass.provisioner)")
	root := flag.String("root", "/var/lib/duckherd-cluster/volumes", "directory holding the volumes")
	node := flag.String("node", "", "node name the volumes live on")
	interval := flag.Duration("interval", 2*time.Second, "resync interval")
	klog.InitFlags(nil)
	flag.Parse()
	if *node == "" {
		klog.Exit("--node is required")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Exitf("kubeconfig: %v", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		klog.Exitf("client: %v", err)
	}
	if err := os.MkdirAll(*root, 0o755); err != nil {
		klog.Exitf("root: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	p := &provisioner{client: client, name: *name, root: *root, node: *node}
	klog.Infof("provisioner %s: volumes under %s on node %s", p.name, p.root, p.node)
	for {
		if err := p.sync(ctx); err != nil && ctx.Err() == nil {
			klog.Errorf("sync: %v", err)
		}
		select {
		case <-ctx.Done():
			klog.Info("stopping")
			return
		case <-time.After(*interval):
		}
	}
}

func (p *provisioner) sync(ctx context.Context) error {
	claims, err := p.client.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range claims.Items {
		pvc := &claims.Items[i]
		if pvc.Spec.VolumeName != "" || pvc.Status.Phase != corev1.ClaimPending || pvc.DeletionTimestamp != nil {
			continue
		}
		ann := pvc.Annotations
		if ann[annStorageProvisioner] != p.name && ann[annBetaStorageProvisioner] != p.name {
			continue
		}
		if n, ok := ann[annSelectedNode]; ok && n != p.node {
			continue
		}
		if err := p.provision(ctx, pvc); err != nil {
			klog.Errorf("provision %s/%s: %v", pvc.Namespace, pvc.Name, err)
		}
	}
	volumes, err := p.client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range volumes.Items {
		pv := &volumes.Items[i]
		if pv.Annotations[annProvisionedBy] != p.name || pv.DeletionTimestamp != nil {
			continue
		}
		if pv.Status.Phase == corev1.VolumeReleased &&
			pv.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimDelete {
			if err := p.delete(ctx, pv); err != nil {
				klog.Errorf("delete %s: %v", pv.Name, err)
			}
		}
	}
	return nil
}

func (p *provisioner) provision(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	if pvc.Spec.StorageClassName == nil {
		return nil
	}
	sc, err := p.client.StorageV1().StorageClasses().Get(ctx, *pvc.Spec.StorageClassName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if sc.Provisioner != p.name {
		return nil
	}
	if pvc.Spec.VolumeMode != nil && *pvc.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		return fmt.Errorf("block volumes are not supported")
	}
	pvName := "pvc-" + string(pvc.UID)
	dir := filepath.Join(p.root, fmt.Sprintf("%s_%s_%s", pvName, pvc.Namespace, pvc.Name))
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	// Pods run as arbitrary non-root users (Pod Security "restricted"): like local-path.
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	if sc.ReclaimPolicy != nil {
		reclaim = *sc.ReclaimPolicy
	}
	hostPathType := corev1.HostPathDirectory
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        pvName,
			Annotations: map[string]string{annProvisionedBy: p.name},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: pvc.Spec.Resources.Requests[corev1.ResourceStorage]},
			AccessModes:                   pvc.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              sc.Name,
			MountOptions:                  sc.MountOptions,
			VolumeMode:                    pvc.Spec.VolumeMode,
			ClaimRef: &corev1.ObjectReference{
				Kind:            "PersistentVolumeClaim",
				APIVersion:      "v1",
				Namespace:       pvc.Namespace,
				Name:            pvc.Name,
				UID:             pvc.UID,
				ResourceVersion: pvc.ResourceVersion,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &hostPathType},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{p.node},
				}}}},
			}},
		},
	}
	_, err = p.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err == nil {
		klog.Infof("provisioned %s for %s/%s at %s", pvName, pvc.Namespace, pvc.Name, dir)
	}
	return err
}

func (p *provisioner) delete(ctx context.Context, pv *corev1.PersistentVolume) error {
	if pv.Spec.HostPath != nil {
		dir := filepath.Clean(pv.Spec.HostPath.Path)
		if !strings.HasPrefix(dir, filepath.Clean(p.root)+string(filepath.Separator)) {
			return fmt.Errorf("refusing to remove %s: not under %s", dir, p.root)
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	err := p.client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		klog.Infof("deleted %s", pv.Name)
	}
	return err
}
