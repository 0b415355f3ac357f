bucket = "ion-prod-tfstate"
prefix = "ion/prod"
