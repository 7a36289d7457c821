module github.com/oncallm/oncallm/tools/images

go 1.26.0
