// Package logging builds WDS's log/slog loggers and adapts them for libraries that want hclog or *log.Logger.
package logging
