bucket = "ion-staging-tfstate"
prefix = "ion/staging"
