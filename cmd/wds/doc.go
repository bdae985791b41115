// Command wds is the command-line tool of WDS, the Work Distribution
// Service: it runs cell nodes (wds server, wds dev), manages domains, shows
// shard maps and routing, joins as a consumer and drains consumers. One
// file per command, each built by a NewXCommand constructor.
package main
