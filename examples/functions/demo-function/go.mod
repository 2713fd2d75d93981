module github.com/appcelerator/amp-demo-function

go 1.19
