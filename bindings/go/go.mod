module github.com/voicebackend/voicebackend/bindings/go

go 1.22
