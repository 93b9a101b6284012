module github.com/reprolab/repro

go 1.26

require github.com/sugarme/gotch v0.9.1

require github.com/BurntSushi/toml v1.6.0

require (
	github.com/stretchr/testify v1.12.1
	go.yaml.in/yaml/v3 v3.0.5 // indirect
)

replace github.com/sugarme/gotch => ./third_party/gotch
