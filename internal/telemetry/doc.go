// Package telemetry gives each WDS node its own metrics, tracing, gRPC instrumentation and HTTP admin server, with no global state.
package telemetry
