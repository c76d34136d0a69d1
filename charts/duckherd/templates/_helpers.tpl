{{/*
The chart name, overridable with nameOverride.
*/}}
{{- define "duckherd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources: fullnameOverride, or "<release>-<chart>" unless
the release name already contains the chart name. Truncated to 63 characters (DNS label).
*/}}
{{- define "duckherd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
"<chart>-<version>" for the helm.sh/chart label.
*/}}
{{- define "duckherd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels selecting the operator Pod; they never change across upgrades (selectors are immutable).
*/}}
{{- define "duckherd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "duckherd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Labels of every resource of the chart.
*/}}
{{- define "duckherd.labels" -}}
app.kubernetes.io/name: {{ include "duckherd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: duckherd
helm.sh/chart: {{ include "duckherd.chart" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The operator's ServiceAccount name.
*/}}
{{- define "duckherd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "duckherd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference, used by the operator and passed on to stage pods: a digest pins it,
otherwise the tag (default: the chart's appVersion).
*/}}
{{- define "duckherd.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The operator's permissions on namespaced resources: shared by the cluster-wide ClusterRole
and by the per-namespace Roles. No Secrets: stage pods receive secret values through
secretKeyRef env vars, which the kubelet resolves, never the operator.
*/}}
{{- define "duckherd.namespacedRules" -}}
- apiGroups: ["duckherd.io"]
  resources: ["datapipelines"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["duckherd.io"]
  resources: ["datapipelines/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: [""]
  resources: ["configmaps", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
- apiGroups: ["batch"]
  resources: ["cronjobs", "jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Stage results are read from the terminated Pods' termination messages.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Kopf discovers the watched resources at runtime from CustomResourceDefinitions.
*/}}
{{- define "duckherd.crdRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/*
The subject of the operator's (Cluster)RoleBindings.
*/}}
{{- define "duckherd.operatorSubject" -}}
- kind: ServiceAccount
  name: {{ include "duckherd.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/*
Where the example goes: demoSource.namespace, else the first watched namespace (the operator
must watch it), else the release namespace. The NOTES tell to apply the example there too.
*/}}
{{- define "duckherd.exampleNamespace" -}}
{{- .Values.demoSource.namespace | default (first .Values.watchNamespaces) | default .Release.Namespace }}
{{- end }}

{{/*
Labels selecting the demo source's Pod.
*/}}
{{- define "duckherd.demoSourceSelectorLabels" -}}
app.kubernetes.io/name: {{ include "duckherd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: demo-source
{{- end }}
