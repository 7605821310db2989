package agent

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/sockeye/sockeye/config"
)

// buildResource describes this agent: defaults, then OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES, then the config's resource: section, later
// ones winning.
func buildResource(ctx context.Context, cfg *config.Config) (*resource.Resource, error) {
	extra := make([]attribute.KeyValue, 0, len(cfg.Resource))
	for k, v := range cfg.Resource {
		extra = append(extra, attribute.String(k, v))
	}
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName("sockeye"), semconv.ServiceVersion(Version)),
		resource.WithHost(),
		resource.WithOSType(),
		resource.WithFromEnv(),
		resource.WithAttributes(extra...),
	)
	if err != nil {
		return nil, fmt.Errorf("resource: %w", err)
	}
	return res, nil
}
