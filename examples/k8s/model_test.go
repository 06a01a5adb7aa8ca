package k8s

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The types below model the subset of the Kubernetes API (apps/v1
// Deployment, v1 Service, policy/v1 PodDisruptionBudget,
// networking.k8s.io/v1 NetworkPolicy) that the manifests use, with the
// API's field names. Decoding is strict: a field missing here is an
// error, so that extending a manifest means extending the model — and
// deciding what the checker must say about the new field. k8s.io/api is
// not a dependency of this module, and would accept unknown fields anyway.

type typeMeta struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
}

type objectMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

// selects reports whether s selects pods labelled labels. An empty
// selector selects nothing here: the manifests always name their pods.
func (s labelSelector) selects(labels map[string]string) bool {
	return len(s.MatchLabels) > 0 && subset(s.MatchLabels, labels)
}

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

type deployment struct {
	APIVersion string         `yaml:"apiVersion"`
	Kind       string         `yaml:"kind"`
	Metadata   objectMeta     `yaml:"metadata"`
	Spec       deploymentSpec `yaml:"spec"`
}

type deploymentSpec struct {
	Replicas             *int               `yaml:"replicas"`
	MinReadySeconds      int                `yaml:"minReadySeconds"`
	RevisionHistoryLimit *int               `yaml:"revisionHistoryLimit"`
	Selector             labelSelector      `yaml:"selector"`
	Strategy             deploymentStrategy `yaml:"strategy"`
	Template             podTemplateSpec    `yaml:"template"`
}

type deploymentStrategy struct {
	Type          string                 `yaml:"type"`
	RollingUpdate *rollingUpdateStrategy `yaml:"rollingUpdate"`
}

type rollingUpdateStrategy struct {
	MaxUnavailable *intOrString `yaml:"maxUnavailable"`
	MaxSurge       *intOrString `yaml:"maxSurge"`
}

type podTemplateSpec struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     podSpec    `yaml:"spec"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int64      `yaml:"terminationGracePeriodSeconds"`
	Containers                    []container `yaml:"containers"`
}

type container struct {
	Name            string           `yaml:"name"`
	Image           string           `yaml:"image"`
	ImagePullPolicy string           `yaml:"imagePullPolicy"`
	Args            []string         `yaml:"args"`
	Ports           []containerPort  `yaml:"ports"`
	StartupProbe    *probe           `yaml:"startupProbe"`
	ReadinessProbe  *probe           `yaml:"readinessProbe"`
	LivenessProbe   *probe           `yaml:"livenessProbe"`
	Lifecycle       *lifecycle       `yaml:"lifecycle"`
	Resources       *resources       `yaml:"resources"`
	SecurityContext *securityContext `yaml:"securityContext"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
	Protocol      string `yaml:"protocol"`
}

type probe struct {
	HTTPGet             *httpGetAction `yaml:"httpGet"`
	GRPC                *grpcAction    `yaml:"grpc"`
	InitialDelaySeconds int            `yaml:"initialDelaySeconds"`
	PeriodSeconds       int            `yaml:"periodSeconds"`
	TimeoutSeconds      int            `yaml:"timeoutSeconds"`
	SuccessThreshold    int            `yaml:"successThreshold"`
	FailureThreshold    int            `yaml:"failureThreshold"`
}

type httpGetAction struct {
	Path   string      `yaml:"path"`
	Port   intOrString `yaml:"port"`
	Scheme string      `yaml:"scheme"`
}

type grpcAction struct {
	Port    int     `yaml:"port"`
	Service *string `yaml:"service"`
}

type lifecycle struct {
	PreStop *lifecycleHandler `yaml:"preStop"`
}

type lifecycleHandler struct {
	HTTPGet *httpGetAction `yaml:"httpGet"`
	Sleep   *sleepAction   `yaml:"sleep"`
	Exec    *execAction    `yaml:"exec"`
}

type sleepAction struct {
	Seconds int64 `yaml:"seconds"`
}

type execAction struct {
	Command []string `yaml:"command"`
}

type resources struct {
	Requests map[string]intOrString `yaml:"requests"`
	Limits   map[string]intOrString `yaml:"limits"`
}

type securityContext struct {
	RunAsNonRoot             *bool         `yaml:"runAsNonRoot"`
	ReadOnlyRootFilesystem   *bool         `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool         `yaml:"allowPrivilegeEscalation"`
	Capabilities             *capabilities `yaml:"capabilities"`
}

type capabilities struct {
	Drop []string `yaml:"drop"`
}

type serviceObject struct {
	APIVersion string      `yaml:"apiVersion"`
	Kind       string      `yaml:"kind"`
	Metadata   objectMeta  `yaml:"metadata"`
	Spec       serviceSpec `yaml:"spec"`
}

type serviceSpec struct {
	Type      string            `yaml:"type"`
	ClusterIP string            `yaml:"clusterIP"`
	Selector  map[string]string `yaml:"selector"`
	Ports     []servicePort     `yaml:"ports"`
}

type servicePort struct {
	Name        string      `yaml:"name"`
	Port        int         `yaml:"port"`
	TargetPort  intOrString `yaml:"targetPort"`
	Protocol    string      `yaml:"protocol"`
	AppProtocol string      `yaml:"appProtocol"`
}

type podDisruptionBudget struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
	Spec       pdbSpec    `yaml:"spec"`
}

type pdbSpec struct {
	MinAvailable               *intOrString  `yaml:"minAvailable"`
	MaxUnavailable             *intOrString  `yaml:"maxUnavailable"`
	Selector                   labelSelector `yaml:"selector"`
	UnhealthyPodEvictionPolicy string        `yaml:"unhealthyPodEvictionPolicy"`
}

type networkPolicy struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   objectMeta        `yaml:"metadata"`
	Spec       networkPolicySpec `yaml:"spec"`
}

type networkPolicySpec struct {
	PodSelector labelSelector       `yaml:"podSelector"`
	PolicyTypes []string            `yaml:"policyTypes"`
	Ingress     []networkPolicyRule `yaml:"ingress"`
}

// networkPolicyRule is an ingress rule. It has no "from": the manifests
// open their public port to everyone and nothing else to anyone.
type networkPolicyRule struct {
	Ports []networkPolicyPort `yaml:"ports"`
}

type networkPolicyPort struct {
	Port     *intOrString `yaml:"port"`
	Protocol string       `yaml:"protocol"`
}

// intOrString is the API's IntOrString: a port number or name, a count or
// a percentage, or a resource quantity.
type intOrString struct {
	IsStr  bool
	IntVal int
	StrVal string
}

// UnmarshalYAML implements the decoder's interface unmarshaler.
func (v *intOrString) UnmarshalYAML(unmarshal func(any) error) error {
	var raw any
	if err := unmarshal(&raw); err != nil {
		return err
	}
	switch x := raw.(type) {
	case string:
		*v = intOrString{IsStr: true, StrVal: x}
	case int:
		*v = intOrString{IntVal: x}
	case int64:
		*v = intOrString{IntVal: int(x)}
	case uint64:
		if x > math.MaxInt32 {
			return fmt.Errorf("integer %d out of range", x)
		}
		*v = intOrString{IntVal: int(x)}
	default:
		return fmt.Errorf("want an integer or a string, got %T %v", raw, raw)
	}
	return nil
}

func (v intOrString) String() string {
	if v.IsStr {
		return v.StrVal
	}
	return strconv.Itoa(v.IntVal)
}

// scaled resolves a count or a percentage of total, rounding the
// percentage up (as maxSurge does) when roundUp and down otherwise (as
// maxUnavailable does).
func (v intOrString) scaled(total int, roundUp bool) (int, error) {
	if !v.IsStr {
		return v.IntVal, nil
	}
	p, ok := strings.CutSuffix(v.StrVal, "%")
	n, err := strconv.Atoi(p)
	if !ok || err != nil || n < 0 {
		return 0, fmt.Errorf("%q is neither a count nor a percentage", v.StrVal)
	}
	if roundUp {
		return (n*total + 99) / 100, nil
	}
	return n * total / 100, nil
}
