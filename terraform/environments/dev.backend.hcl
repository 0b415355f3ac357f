bucket = "ion-dev-tfstate"
prefix = "ion/dev"
